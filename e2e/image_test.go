package e2e

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"path"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// archiveImage is an image read from a docker-archive: its configuration
// and its files, layers applied in order.
type archiveImage struct {
	RepoTags []string
	Config   struct {
		User       string
		Entrypoint []string
		Cmd        []string
		Labels     map[string]string
	}
	Size  int64 // bytes of all layers
	Files map[string]imageFile
}

type imageFile struct {
	mode     int64
	typeflag byte
	link     string
	data     []byte // regular files only
}

func readArchive(t *testing.T, file string) *archiveImage {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	members := map[string][]byte{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		members[path.Clean(h.Name)] = b
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(members["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("%s: manifest.json: %v (%d images)", file, err, len(manifest))
	}
	img := &archiveImage{RepoTags: manifest[0].RepoTags, Files: map[string]imageFile{}}
	var cfg struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(members[manifest[0].Config], &cfg); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(cfg.Config, &img.Config); err != nil {
		t.Fatal(err)
	}
	for _, l := range manifest[0].Layers {
		data := members[path.Clean(l)]
		img.Size += int64(len(data))
		lr := tar.NewReader(bytes.NewReader(data))
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l, err)
			}
			name := "/" + strings.TrimPrefix(path.Clean("/"+h.Name), "/")
			dir, base := path.Split(name)
			if base == ".wh..wh..opq" {
				for p := range img.Files {
					if strings.HasPrefix(p, dir) {
						delete(img.Files, p)
					}
				}
				continue
			}
			if w, ok := strings.CutPrefix(base, ".wh."); ok {
				delete(img.Files, dir+w)
				continue
			}
			fi := imageFile{mode: h.Mode, typeflag: h.Typeflag, link: h.Linkname}
			if h.Typeflag == tar.TypeReg {
				fi.data, _ = io.ReadAll(lr)
			}
			img.Files[name] = fi
		}
	}
	return img
}

// shells are the names of programs that would give `kubectl exec` a shell.
var shells = regexp.MustCompile(`^(sh|bash|ash|dash|zsh|ksh|mksh|busybox|toybox)$`)

// TestImage checks the image podman built from the shipped Dockerfile, as
// the node runs it: a numeric non-root user (runAsNonRoot can verify it), no
// shell, every executable static, the OCI labels, the entrypoint, a bounded
// size, and the name manifests/ deploy.
func TestImage(t *testing.T) {
	archive := mcpguardImage(t)
	img := readArchive(t, archive)

	if len(img.RepoTags) != 1 || !strings.HasPrefix(img.RepoTags[0], imageRepo+":") {
		t.Errorf("image is tagged %q, want %s:TAG", img.RepoTags, imageRepo)
	}
	// manifests/ deploys the same repository, and the Dockerfile documents it.
	var kust struct {
		Images []struct{ Name, NewName, NewTag string }
	}
	b, err := os.ReadFile("../manifests/base/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kust); err != nil {
		t.Fatal(err)
	}
	if len(kust.Images) != 1 || kust.Images[0].NewName != imageRepo {
		t.Errorf("manifests/base/kustomization.yaml images %+v; want newName %s", kust.Images, imageRepo)
	}
	if df, _ := os.ReadFile("../Dockerfile"); !bytes.Contains(df, []byte("-t "+imageRepo+":")) {
		t.Errorf("the Dockerfile's build comment does not name %s", imageRepo)
	}

	uid, gid, ok := strings.Cut(img.Config.User, ":")
	if u, err := strconv.Atoi(uid); err != nil || u == 0 {
		t.Errorf("USER %q: want a numeric non-root UID", img.Config.User)
	}
	if ok {
		if g, err := strconv.Atoi(gid); err != nil || g == 0 {
			t.Errorf("USER %q: want a numeric non-root GID", img.Config.User)
		}
	}
	if passwd, ok := img.Files["/etc/passwd"]; !ok || !regexp.MustCompile(`(?m)^[a-z]+:x:`+uid+`:`).Match(passwd.data) {
		t.Errorf("/etc/passwd has no user %s (a UID without an entry runs with group 0)", uid)
	}
	if len(img.Config.Entrypoint) != 1 || img.Config.Entrypoint[0] != "/usr/local/bin/mcpguard" {
		t.Errorf("entrypoint %q, want [/usr/local/bin/mcpguard]", img.Config.Entrypoint)
	}
	for _, l := range []string{"title", "description", "version", "revision", "url"} {
		if v := img.Config.Labels["org.opencontainers.image."+l]; v == "" || v == "unknown" {
			t.Errorf("label org.opencontainers.image.%s is %q", l, v)
		}
	}
	if _, ok := img.Files["/etc/ssl/certs/ca-certificates.crt"]; !ok {
		t.Error("no CA bundle at /etc/ssl/certs/ca-certificates.crt: the proxy could not dial a TLS gateway")
	}

	// No shell, and every executable (the sidecar's and any other binary
	// the image gains) is static: it runs on a base with no libc.
	executables := 0
	for p, f := range img.Files {
		if shells.MatchString(path.Base(p)) {
			t.Errorf("%s: the image has a shell", p)
		}
		if f.typeflag != tar.TypeReg || f.mode&0o111 == 0 {
			continue
		}
		executables++
		e, err := elf.NewFile(bytes.NewReader(f.data))
		if err != nil {
			t.Errorf("%s is executable but not an ELF binary (a script needs a shell): %v", p, err)
			continue
		}
		for _, prog := range e.Progs {
			if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
				t.Errorf("%s has a %v program header: not static", p, prog.Type)
			}
		}
		if e.Section(".symtab") != nil {
			t.Errorf("%s has a symbol table: not stripped (-s)", p)
		}
	}
	if ep, ok := img.Files["/usr/local/bin/mcpguard"]; !ok || ep.mode&0o111 == 0 {
		t.Error("the entrypoint /usr/local/bin/mcpguard is not an executable file in the image")
	}
	// What the webhook injects as the sidecar's command (inject.SidecarCommand).
	if sc, ok := img.Files["/usr/local/bin/mcpguard-sidecar"]; !ok || sc.mode&0o111 == 0 {
		t.Error("the sidecar's binary /usr/local/bin/mcpguard-sidecar is not an executable file in the image: injected pods would not start")
	}
	// What the sidecar starts beside itself when a policy has Rego modules
	// (rules/regoworker).
	if w, ok := img.Files["/usr/local/bin/mcpguard-rego"]; !ok || w.mode&0o111 == 0 {
		t.Error("the sidecar's Rego worker /usr/local/bin/mcpguard-rego is not an executable file in the image: policies with Rego would be refused")
	}
	t.Logf("image %s: %d files, %d executable, %.1f MiB", img.RepoTags, len(img.Files), executables, float64(img.Size)/(1<<20))
	// The binaries are ~85 + ~23 + ~19 MB (mcpguard, mcpguard-sidecar, its Rego
	// worker); the base adds ~1 MB. A jump means something
	// unintended entered the image.
	if img.Size > 150<<20 {
		t.Errorf("image is %.0f MiB, over the 150 MiB budget", float64(img.Size)/(1<<20))
	}
}
