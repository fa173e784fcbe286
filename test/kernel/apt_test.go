package kernel

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeArchive plays apt-get and apt-cache against a Debian archive that
// serves some kernel packages now, while the machine's package lists hold
// what the archive served at the last `apt-get update`.
type fakeArchive struct {
	mu sync.Mutex
	// served is what the archive offers today: package → version.
	served map[string]string
	// lists is the machine's view of the archive.
	lists map[string]string
	// offline makes every network operation fail the way apt does.
	offline bool
	// failUpdates makes the next n updates fail as if offline.
	failUpdates int
	// beforeDownload, when set, runs before each download (the archive
	// moving under a run).
	beforeDownload func(f *fakeArchive)

	updates, downloads []string // what ran, in order
}

func newFakeArchive(served, lists map[string]string) *fakeArchive {
	return &fakeArchive{served: copyMap(served), lists: copyMap(lists)}
}

func copyMap(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (f *fakeArchive) apt(root bool) *Apt {
	return &Apt{run: f.run, root: root, extract: fakeExtract}
}

// fakeExtract stands in for dpkg-deb: it records which .deb it was given.
func fakeExtract(_ context.Context, deb, dir string, k *Kernel) error {
	k.Vmlinuz = filepath.Join(dir, "vmlinuz")
	k.Release = strings.TrimPrefix(k.Package, "linux-image-")
	return os.WriteFile(k.Vmlinuz, []byte(filepath.Base(deb)), 0o644)
}

func cmdErr(args []string, stderr string) error {
	return &CommandError{Args: args, Err: errors.New("exit status 100"), Stderr: stderr}
}

func (f *fakeArchive) run(_ context.Context, dir, name string, args ...string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	argv := append([]string{name}, args...)
	line := strings.Join(argv, " ")
	switch {
	case line == "apt-get update":
		f.updates = append(f.updates, "update")
		if f.offline || f.failUpdates > 0 {
			if f.failUpdates > 0 {
				f.failUpdates--
			}
			return nil, cmdErr(argv, "W: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease  Temporary failure resolving 'deb.debian.org'\n"+
				"W: Some index files failed to download. They have been ignored, or old ones used instead.\nE: Could not resolve 'deb.debian.org'")
		}
		f.lists = copyMap(f.served)
		return nil, nil
	case line == "apt-cache depends linux-image-amd64":
		var b strings.Builder
		b.WriteString("linux-image-amd64\n")
		for _, p := range f.sortedLists() {
			if m := regexp.MustCompile(`^(linux-image-6\.1\.0-\d+-amd64)-unsigned$`).FindStringSubmatch(p); m != nil {
				fmt.Fprintf(&b, "  Depends: %s\n", m[1])
			}
		}
		return []byte(b.String()), nil
	case len(args) >= 2 && name == "apt-cache" && args[0] == "search":
		re := regexp.MustCompile(args[len(args)-1])
		var b strings.Builder
		for _, p := range f.sortedLists() {
			if re.MatchString(p) {
				fmt.Fprintf(&b, "%s - Linux for 64-bit PCs\n", p)
			}
		}
		return []byte(b.String()), nil
	case len(args) == 3 && name == "apt-cache" && args[0] == "show":
		v, ok := f.lists[args[2]]
		if !ok {
			return nil, cmdErr(argv, "N: Unable to locate package "+args[2]+"\nE: No packages found")
		}
		return []byte("Package: " + args[2] + "\nVersion: " + v + "\n"), nil
	case len(args) == 2 && line == "apt-get download "+args[1]:
		if f.beforeDownload != nil {
			f.beforeDownload(f)
		}
		pkg := args[1]
		f.downloads = append(f.downloads, pkg)
		v, listed := f.lists[pkg]
		switch {
		case !listed:
			return nil, cmdErr(argv, "E: Can't select candidate version from package "+pkg+" as it has no candidate")
		case f.offline:
			return nil, cmdErr(argv, "E: Failed to fetch http://deb.debian.org/debian-security/pool/updates/main/l/linux/"+pkg+"_"+v+"_amd64.deb  Temporary failure resolving 'deb.debian.org'")
		case f.served[pkg] != v:
			return nil, cmdErr(argv, "Err:1 http://deb.debian.org/debian-security bookworm-security/main amd64 "+pkg+" amd64 "+v+"\n  404  Not Found [IP: 151.101.2.132 80]\n"+
				"E: Failed to fetch http://deb.debian.org/debian-security/pool/updates/main/l/linux/"+pkg+"_"+v+"_amd64.deb  404  Not Found [IP: 151.101.2.132 80]")
		}
		return nil, os.WriteFile(filepath.Join(dir, pkg+"_"+v+"_amd64.deb"), []byte("deb"), 0o644)
	}
	return nil, fmt.Errorf("fake apt: unexpected command %q", line)
}

func (f *fakeArchive) sortedLists() []string {
	var ps []string
	for p := range f.lists {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

const (
	old61  = "linux-image-6.1.0-48-amd64-unsigned"
	new61  = "linux-image-6.1.0-57-amd64-unsigned"
	p612a  = "linux-image-6.12.9+deb12-amd64-unsigned"
	p612b  = "linux-image-6.12.48+deb12-amd64-unsigned"
	p612c  = "linux-image-6.12.117+deb12-amd64-unsigned"
	v61old = "6.1.172-1"
	v61new = "6.1.178-1"
)

// The machine's lists predate the archive's last ABI rotation: they name
// 6.1.0-48, which the archive no longer serves.
var (
	staleLists = map[string]string{old61: v61old}
	archiveNow = map[string]string{new61: v61new, p612a: "6.12.9-1", p612b: "6.12.48-1~deb12u1", p612c: "6.12.117-1~deb12u1"}
)

func TestAptFetch(t *testing.T) {
	tests := []struct {
		name    string
		root    bool
		series  Series
		served  map[string]string
		lists   map[string]string
		setup   func(f *fakeArchive)
		want    string // package fetched
		wantErr []string
		updates int
		dls     []string
	}{
		{
			name: "root refreshes stale lists before resolving", root: true, series: Series61,
			served: archiveNow, lists: staleLists,
			want: new61, updates: 1, dls: []string{new61},
		},
		{
			// The refresh before resolving fails (a mirror hiccup), so the
			// stale name is tried; its download fails, the second refresh
			// works and the refreshed name downloads.
			name: "stale name fails then refreshed name succeeds", root: true, series: Series61,
			served: archiveNow, lists: staleLists,
			setup: func(f *fakeArchive) { f.failUpdates = 1 },
			want:  new61, updates: 2, dls: []string{old61, new61},
		},
		{
			// The archive rotates the ABI between the refresh and the
			// download: the second refresh catches up.
			name: "archive moves during the run", root: true, series: Series61,
			served: map[string]string{old61: v61old}, lists: staleLists,
			setup: func(f *fakeArchive) {
				f.beforeDownload = func(f *fakeArchive) { f.served = copyMap(archiveNow); f.beforeDownload = nil }
			},
			want: new61, updates: 2, dls: []string{old61, new61},
		},
		{
			name: "several 6.12 versions: the newest", root: true, series: Series612,
			served: archiveNow, lists: map[string]string{},
			want: p612c, updates: 1, dls: []string{p612c},
		},
		{
			name: "not root: stale lists fail with the fix", root: false, series: Series61,
			served: archiveNow, lists: staleLists,
			wantErr: []string{"kernel 6.1", "apt-get download " + old61, "404  Not Found", "sudo apt-get update"},
			updates: 0, dls: []string{old61},
		},
		{
			name: "not root: no 6.12 in old lists", root: false, series: Series612,
			served: archiveNow, lists: staleLists,
			wantErr: []string{"kernel 6.12", "resolving the package", "no linux-image-6.12", "sudo apt-get update"},
			updates: 0,
		},
		{
			name: "no network, cold cache", root: true, series: Series61,
			served: archiveNow, lists: staleLists,
			setup:   func(f *fakeArchive) { f.offline = true },
			wantErr: []string{"kernel 6.1", "apt-get download " + old61, "Temporary failure resolving", "apt-get update failed too", "Could not resolve"},
			updates: 2, dls: []string{old61},
		},
		{
			name: "archive stopped serving it even after update", root: true, series: Series61,
			served: map[string]string{}, lists: staleLists,
			wantErr: []string{"kernel 6.1", "resolving the package", "no linux-image-6.1.0-N-amd64", "sources.list"},
			updates: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeArchive(tc.served, tc.lists)
			if tc.setup != nil {
				tc.setup(f)
			}
			k, err := f.apt(tc.root).Fetch(context.Background(), tc.series, t.TempDir())
			require.Len(t, f.updates, tc.updates, "apt-get update runs")
			require.Equal(t, tc.dls, f.downloads, "downloads in order")
			if tc.wantErr != nil {
				require.Error(t, err)
				require.NotContains(t, err.Error(), "\n", "the failure must be one line")
				for _, w := range tc.wantErr {
					require.Contains(t, err.Error(), w)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, k.Package)
			require.Equal(t, f.served[tc.want], k.Version)
			deb, err := os.ReadFile(k.Vmlinuz)
			require.NoError(t, err)
			require.Equal(t, tc.want+"_"+f.served[tc.want]+"_amd64.deb", string(deb), "extracted from the downloaded package")
		})
	}
}

// The cache is keyed by package and version: a second run downloads
// nothing, an ABI bump downloads once, and a warm cache works offline.
func TestAptCache(t *testing.T) {
	ctx := context.Background()
	cache := t.TempDir()
	f := newFakeArchive(archiveNow, staleLists)

	k1, err := f.apt(true).Fetch(ctx, Series61, cache)
	require.NoError(t, err)
	require.Equal(t, new61, k1.Package)

	k2, err := f.apt(true).Fetch(ctx, Series61, cache)
	require.NoError(t, err)
	require.Equal(t, k1, k2)
	require.Equal(t, []string{new61}, f.downloads, "the second run reuses the cache")

	// Offline with the lists of the last run: the cached kernel serves.
	f.offline = true
	k3, err := f.apt(true).Fetch(ctx, Series61, cache)
	require.NoError(t, err)
	require.Equal(t, k1, k3)
	require.Equal(t, []string{new61}, f.downloads)

	// Debian rotates the ABI: one download of the new package, in its own
	// entry beside the old one.
	f.offline = false
	const newer = "linux-image-6.1.0-58-amd64-unsigned"
	f.served = map[string]string{newer: "6.1.180-1"}
	k4, err := f.apt(true).Fetch(ctx, Series61, cache)
	require.NoError(t, err)
	require.Equal(t, newer, k4.Package)
	_, err = f.apt(true).Fetch(ctx, Series61, cache)
	require.NoError(t, err)
	require.Equal(t, []string{new61, newer}, f.downloads)
	for _, dir := range []string{new61 + "_" + v61new, newer + "_6.1.180-1"} {
		require.FileExists(t, filepath.Join(cache, dir, kernelManifest))
	}
}

// Both series fetched at once (as the matrix does) refresh the lists once.
func TestAptRefreshOncePerRun(t *testing.T) {
	f := newFakeArchive(archiveNow, staleLists)
	apt := f.apt(true)
	cache := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []Series{Series61, Series612} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = apt.Fetch(context.Background(), s, cache)
		}()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Len(t, f.updates, 1)
	require.ElementsMatch(t, []string{new61, p612c}, f.downloads)
}

func TestCommandErrorReason(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"W: x\nE: Can't select candidate version\n", "E: Can't select candidate version"},
		{"E: one\nE: two", "E: one; E: two"},
		{"dpkg: warning\nlast words\n", "last words"},
		{"", "exit status 100"},
	}
	for _, tc := range tests {
		err := &CommandError{Args: []string{"apt-get"}, Err: errors.New("exit status 100"), Stderr: tc.stderr}
		require.Equal(t, tc.want, err.Reason())
	}
}
