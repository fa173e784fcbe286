package kernel

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Series names a kernel line the suite covers.
type Series string

const (
	Series61  Series = "6.1"
	Series612 Series = "6.12"
)

// ErrNoKernelPackage means apt knows no package for the requested series.
var ErrNoKernelPackage = errors.New("no kernel package found")

var (
	// "  Depends: linux-image-6.1.0-48-amd64"
	metaDependsRE = regexp.MustCompile(`(?m)^\s*Depends:\s*(linux-image-6\.1\.0-\d+-amd64)\s*$`)
	// "linux-image-6.12.117+deb12-amd64-unsigned - Linux 6.12 for 64-bit PCs"
	series612RE = regexp.MustCompile(`(?m)^(linux-image-6\.12\.(\d+)\+deb12-amd64-unsigned)\s`)
)

// unsigned61FromDepends picks the 6.1 image the meta package depends on from
// `apt-cache depends linux-image-amd64` and names its -unsigned variant,
// which carries the same kernel without the signed-EFI indirection.
func unsigned61FromDepends(out []byte) (string, error) {
	m := metaDependsRE.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("%w: no linux-image-6.1.0-N-amd64 in apt-cache depends linux-image-amd64", ErrNoKernelPackage)
	}
	return string(m[1]) + "-unsigned", nil
}

// newest612FromSearch picks the highest 6.12 patch level from
// `apt-cache search --names-only`.
func newest612FromSearch(out []byte) (string, error) {
	best, bestPatch := "", -1
	for _, m := range series612RE.FindAllSubmatch(out, -1) {
		patch, err := strconv.Atoi(string(m[2]))
		if err != nil {
			continue
		}
		if patch > bestPatch {
			best, bestPatch = string(m[1]), patch
		}
	}
	if best == "" {
		return "", fmt.Errorf("%w: no linux-image-6.12.*+deb12-amd64-unsigned in apt-cache search", ErrNoKernelPackage)
	}
	return best, nil
}

// versionFromShow reads the Version field of `apt-cache show --no-all-versions`.
func versionFromShow(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Version: "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("no Version field in apt-cache show output")
}

// aptQueries are the apt-cache command lines that name a series' package.
func aptQueries(s Series) ([]string, func([]byte) (string, error), error) {
	switch s {
	case Series61:
		return []string{"apt-cache", "depends", "linux-image-amd64"}, unsigned61FromDepends, nil
	case Series612:
		return []string{"apt-cache", "search", "--names-only", `^linux-image-6\.12\..*\+deb12-amd64-unsigned$`}, newest612FromSearch, nil
	default:
		return nil, nil, fmt.Errorf("unknown kernel series %q (want %s or %s)", s, Series61, Series612)
	}
}
