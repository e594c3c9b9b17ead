package kubenode

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`/tmp/a`, `/tmp/a`},
		{`/tmp/with\040space`, `/tmp/with space`},
		{`/tmp/tab\011x`, "/tmp/tab\tx"},
		{`/tmp/trailing\`, `/tmp/trailing\`},
	} {
		if got := unescapeMount(c.in); got != c.want {
			t.Errorf("unescapeMount(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestWriteImage reads back the docker-archive WriteImage makes: the
// manifest names the image and its layer, the layer holds every file with
// its parent directories, mode and owner.
func TestWriteImage(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	if err := os.WriteFile(src, []byte("\x7fELF..."), 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "img.tar")
	err := WriteImage(archive, "localhost/x/y:1", ImageConfig{Entrypoint: []string{"/usr/bin/x"}, User: "65532:65532"}, []File{
		{Path: "/usr/bin/x", Mode: 0o755, Src: src},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("nonroot:x:65532:65532::/:/sbin/nologin\n"), UID: 0},
		{Path: "/bin/sh", Link: "busybox"},
		{Path: "/tmp", Mode: 0o777 | os.ModeSticky},
	})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
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
		members[h.Name], _ = io.ReadAll(tr)
	}
	var manifest []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(members["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json %s: %v", members["manifest.json"], err)
	}
	if got := manifest[0].RepoTags; len(got) != 1 || got[0] != "localhost/x/y:1" {
		t.Errorf("RepoTags %q", got)
	}
	var cfg struct {
		Config ImageConfig `json:"config"`
		Rootfs struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(members[manifest[0].Config], &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || cfg.Config.Entrypoint[0] != "/usr/bin/x" || len(cfg.Rootfs.DiffIDs) != 1 {
		t.Errorf("config %+v", cfg)
	}
	want := map[string]string{"usr/": "dir", "usr/bin/": "dir", "usr/bin/x": "755", "etc/passwd": "644", "bin/sh": "link busybox", "tmp/": "dir 1777"}
	lr := tar.NewReader(strings.NewReader(string(members[manifest[0].Layers[0]])))
	got := map[string]string{}
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			got[h.Name] = "dir"
			if h.Mode&0o1000 != 0 {
				got[h.Name] = "dir 1777"
			}
		case tar.TypeSymlink:
			got[h.Name] = "link " + h.Linkname
		default:
			got[h.Name] = map[os.FileMode]string{0o755: "755", 0o644: "644"}[os.FileMode(h.Mode).Perm()]
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("layer entry %s: %q, want %q (layer: %v)", k, got[k], v, got)
		}
	}
}
