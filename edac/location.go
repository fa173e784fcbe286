package edac

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/selfprotect/selfprotect/fault"
)

// maxLayers is EDAC_MAX_LAYERS: a controller describes its memory with at
// most three layers (e.g. branch/channel/slot, csrow/channel, or one
// "memory" layer on ghes).
const maxLayers = 3

// Layer is one "<name> <index>" pair of a dimm_location.
type Layer struct {
	Name  string // "branch", "channel", "slot", "csrow", "memory"
	Index int
}

// ParseLocation decodes dimm_location, which the kernel writes as
// "<layer> <n> " once per layer of the controller ("csrow 0 channel 1 ",
// "channel 2 slot 0 ", "memory 3 "). Layer names are taken as written so a
// new layer type does not break the reader.
func ParseLocation(s string) ([]Layer, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return nil, errors.New("empty dimm location")
	}
	if len(f)%2 != 0 {
		return nil, fmt.Errorf("dimm location %q: want \"<layer> <index>\" pairs", s)
	}
	if len(f)/2 > maxLayers {
		return nil, fmt.Errorf("dimm location %q: %d layers, the kernel has at most %d", s, len(f)/2, maxLayers)
	}
	layers := make([]Layer, 0, len(f)/2)
	for i := 0; i < len(f); i += 2 {
		name := f[i]
		if !isLayerName(name) {
			return nil, fmt.Errorf("dimm location %q: %q is not a layer name", s, name)
		}
		n, err := strconv.ParseUint(f[i+1], 10, 31)
		if err != nil {
			return nil, fmt.Errorf("dimm location %q: layer %s index %q is not a small number", s, name, f[i+1])
		}
		layers = append(layers, Layer{Name: name, Index: int(n)})
	}
	return layers, nil
}

func isLayerName(s string) bool {
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '_' {
			return false
		}
	}
	return s != ""
}

// LayerIndexes turns parsed layers into the top/middle/lower triple the
// mc_event tracepoint uses, Unknown for layers the controller lacks.
func LayerIndexes(layers []Layer) [3]int {
	out := [3]int{fault.Unknown, fault.Unknown, fault.Unknown}
	for i, l := range layers {
		if i >= maxLayers {
			break
		}
		out[i] = l.Index
	}
	return out
}
