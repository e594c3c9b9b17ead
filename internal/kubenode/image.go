package kubenode

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// File is one file of an image made by WriteImage.
type File struct {
	Path string // absolute path in the image
	Mode fs.FileMode
	// Exactly one of Data, Src (a file on this machine) and Link (a symlink
	// target); none: a directory.
	Data     []byte
	Src      string
	Link     string
	UID, GID int
}

// ImageConfig is the part of an OCI image configuration WriteImage sets.
type ImageConfig struct {
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Cmd        []string          `json:"Cmd,omitempty"`
	User       string            `json:"User,omitempty"`
	Env        []string          `json:"Env,omitempty"`
	WorkingDir string            `json:"WorkingDir,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

// WriteImage writes a one-layer image named ref as a docker-archive at dst,
// which ImportImage (ctr) loads. No container engine is involved: test
// images are a static binary and a few files.
func WriteImage(dst, ref string, cfg ImageConfig, files []File) error {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	dirs := map[string]bool{"/": true}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	mtime := time.Unix(0, 0)
	var mkdirs func(p string) error
	mkdirs = func(p string) error {
		if dirs[p] {
			return nil
		}
		if err := mkdirs(path.Dir(p)); err != nil {
			return err
		}
		dirs[p] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(p, "/") + "/", Mode: 0o755, ModTime: mtime})
	}
	for _, f := range files {
		if !path.IsAbs(f.Path) {
			return fmt.Errorf("kubenode: image file %q is not absolute", f.Path)
		}
		if err := mkdirs(path.Dir(f.Path)); err != nil {
			return err
		}
		name := strings.TrimPrefix(f.Path, "/")
		h := &tar.Header{Name: name, Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID, ModTime: mtime}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		data := f.Data
		switch {
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.Src != "":
			var err error
			if data, err = os.ReadFile(f.Src); err != nil {
				return err
			}
			fallthrough
		case f.Data != nil:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
		default:
			if dirs[f.Path] {
				continue
			}
			dirs[f.Path] = true
			h.Typeflag, h.Name = tar.TypeDir, name+"/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(data); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	layerID := hex.EncodeToString(layerSum[:])
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       cfg,
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + layerID}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{
		"Config": configName, "RepoTags": []string{ref}, "Layers": []string{layerID + "/layer.tar"},
	}})
	if err != nil {
		return err
	}
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	aw := tar.NewWriter(out)
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, config}, {layerID + "/layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := aw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: mtime}); err != nil {
			out.Close()
			return err
		}
		if _, err := aw.Write(e.data); err != nil {
			out.Close()
			return err
		}
	}
	if err := aw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// pauseSource is the sandbox's process: it waits for SIGTERM.
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
`

// pauseImage builds the pause image into dir and returns its archive.
func pauseImage(dir string) (string, error) {
	src := filepath.Join(dir, "pause-src")
	if err := os.MkdirAll(src, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(pauseSource), 0o600); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module pause\n\ngo 1.22\n"), 0o600); err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin := filepath.Join(dir, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-mod=mod", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("kubenode: building pause: %v: %s", err, out)
	}
	archive := filepath.Join(dir, "pause.tar")
	return archive, WriteImage(archive, PauseImage, ImageConfig{Entrypoint: []string{"/pause"}, User: "65535:65535"},
		[]File{{Path: "/pause", Mode: 0o755, Src: bin}})
}
