package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// Apt is the suite's view of Debian's archive through apt: it names
// the package that carries a series' kernel today and fetches it.
//
// Debian rotates kernel ABIs with every security update and then serves
// only the newest, so package lists a few days old name a kernel that can
// no longer be downloaded. As root it therefore refreshes the
// lists once per run before the first resolution, and once more when a
// download fails anyway (the archive can move during a run). Without root
// it uses the lists as they are and, on failure, names the command that
// fixes them.
type Apt struct {
	run     runFunc
	root    bool
	extract func(ctx context.Context, deb, dir string, k *Kernel) error

	mu        sync.Mutex
	refreshed bool  // the once-per-run refresh has been tried
	updates   int   // apt-get update runs started by this Apt
	updateErr error // the last refresh's failure, nil after a success
}

// NewApt uses the host's apt, as root when this process is.
func NewApt() *Apt {
	return &Apt{run: runCommand, root: os.Geteuid() == 0, extract: extractKernel}
}

// RefreshOnce runs apt-get update the first time it is called by root and
// does nothing afterwards. Its failure (no network, say) is remembered for
// the error messages and returned, but callers carry on: lists that are a
// little old still serve a kernel that is already in the cache.
func (a *Apt) RefreshOnce(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.root || a.refreshed {
		return nil
	}
	a.refreshed = true
	return a.refreshLocked(ctx)
}

// Refresh runs apt-get update now (root only).
func (a *Apt) Refresh(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.root {
		return errors.New("refreshing the package lists needs root")
	}
	a.refreshed = true
	return a.refreshLocked(ctx)
}

func (a *Apt) refreshLocked(ctx context.Context) error {
	a.updates++
	_, err := a.run(ctx, "", "apt-get", "update")
	a.updateErr = err
	return err
}

func (a *Apt) lastUpdateErr() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.updateErr
}

// Resolve asks apt which package carries the series' kernel and its
// candidate version, from the lists as they are now.
func (a *Apt) Resolve(ctx context.Context, s Series) (name, version string, err error) {
	query, parse, err := aptQueries(s)
	if err != nil {
		return "", "", err
	}
	out, err := a.run(ctx, "", query[0], query[1:]...)
	if err != nil {
		return "", "", err
	}
	if name, err = parse(out); err != nil {
		return "", "", err
	}
	out, err = a.run(ctx, "", "apt-cache", "show", "--no-all-versions", name)
	if err != nil {
		return "", "", err
	}
	if version, err = versionFromShow(out); err != nil {
		return "", "", fmt.Errorf("package %s: %w", name, err)
	}
	return name, version, nil
}

// aptFailure is a resolution or download that apt refused: the kind of
// failure fresher package lists can cure.
type aptFailure struct {
	pkg string // empty when no package could be named
	err error
}

func (e *aptFailure) Error() string { return e.err.Error() }
func (e *aptFailure) Unwrap() error { return e.err }

// Fetch returns the series' kernel, downloading and extracting it into
// cacheDir on first use. Cache entries are keyed by package name and
// version, so an ABI bump downloads once and later runs reuse it. A
// failure is one line naming the package, apt's complaint and the fix.
func (a *Apt) Fetch(ctx context.Context, s Series, cacheDir string) (*Kernel, error) {
	_ = a.RefreshOnce(ctx) // remembered in updateErr for the message
	k, err := a.fetch(ctx, s, cacheDir)
	var af *aptFailure
	if err == nil || !errors.As(err, &af) {
		return k, err
	}
	if a.root {
		if rerr := a.Refresh(ctx); rerr == nil {
			if k, err = a.fetch(ctx, s, cacheDir); err == nil {
				return k, nil
			}
			if !errors.As(err, &af) {
				return nil, err
			}
		}
	}
	return nil, a.explain(s, af)
}

func (a *Apt) fetch(ctx context.Context, s Series, cacheDir string) (*Kernel, error) {
	name, version, err := a.Resolve(ctx, s)
	if err != nil {
		return nil, &aptFailure{err: err}
	}
	dir, err := filepath.Abs(filepath.Join(cacheDir, name+"_"+version))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", dir, err)
	}
	// Two matrix cells of one series may fetch at once: one downloads,
	// the other waits and then reads the manifest.
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	if k, err := readManifest(dir); err == nil {
		return k, nil
	}
	deb, err := a.download(ctx, name, dir)
	if err != nil {
		return nil, err
	}
	k := &Kernel{Series: s, Package: name, Version: version}
	if err := a.extract(ctx, deb, dir, k); err != nil {
		return nil, fmt.Errorf("extracting %s: %w", deb, err)
	}
	data, err := json.MarshalIndent(k, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, kernelManifest), data, 0o644); err != nil {
		return nil, fmt.Errorf("writing manifest: %w", err)
	}
	return k, nil
}

// download fetches the package into dir/download and returns the .deb
// path. apt-get download names the file itself (epochs are escaped), so it
// runs in an empty directory and we take whatever .deb appears.
func (a *Apt) download(ctx context.Context, name, dir string) (string, error) {
	dl := filepath.Join(dir, "download")
	if debs, _ := filepath.Glob(filepath.Join(dl, "*.deb")); len(debs) == 1 {
		return debs[0], nil
	}
	if err := os.RemoveAll(dl); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return "", err
	}
	if _, err := a.run(ctx, dl, "apt-get", "download", name); err != nil {
		// An empty directory left behind would look like a half download.
		_ = os.RemoveAll(dir)
		return "", &aptFailure{pkg: name, err: err}
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s left %d .deb files in %s", name, len(debs), dl)
	}
	return debs[0], nil
}

// explain turns an apt failure into one line: which kernel, which package,
// what apt said, and what fixes it.
func (a *Apt) explain(s Series, af *aptFailure) error {
	what := "resolving the package"
	if af.pkg != "" {
		what = "apt-get download " + af.pkg
	}
	fix := ""
	updErr := a.lastUpdateErr()
	switch {
	case !a.root:
		fix = "the package lists may be older than the archive: run 'sudo apt-get update' and try again (as root, make check refreshes them itself)"
	case updErr != nil:
		fix = "apt-get update failed too (" + reason(updErr) + "): check this machine's access to the Debian archive (network, proxy, /etc/apt/sources.list*)"
	default:
		fix = "the archive does not serve it even after apt-get update: check that /etc/apt/sources.list* includes bookworm, bookworm-updates and bookworm-security"
	}
	return fmt.Errorf("kernel %s: %s failed: %s; fix: %s", s, what, reason(af.err), fix)
}

// reason is an error's cause in one line.
func reason(err error) string {
	var ce *CommandError
	if errors.As(err, &ce) {
		return ce.Reason()
	}
	return strings.Join(strings.Fields(err.Error()), " ")
}
