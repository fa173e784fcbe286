package sim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenario is a fault-injection script: a machine profile and timed steps.
//
//	profile: {kernel: "6.12", cpu: intel, edac: true}
//	steps:
//	  - at: 0s
//	    inject: {kind: memory-ce, addr: 0x2d94040, cpu: 1, count: 2}
//	  - after: 100ms
//	    inject: {kind: cache-ce, cpu: 2, count: 5}
//
// "at" is an offset from the start of play, "after" a delay after the
// previous step; a step with neither runs right after the previous one.
// Waiting for the daemon's reaction is the test harness's job, not the
// scenario's.
type Scenario struct {
	Path    string  `yaml:"-"`
	Profile Profile `yaml:"profile"`
	Steps   []Step  `yaml:"steps"`
}

// Step is one timed injection.
type Step struct {
	At     *time.Duration `yaml:"at"`
	After  *time.Duration `yaml:"after"`
	Inject *Injection     `yaml:"inject"`
	// Line is the step's line in the scenario file, for error messages.
	Line int `yaml:"-"`
}

// Injection kinds.
const (
	KindMemoryCE = "memory-ce"
	// KindMemoryCENoSyndrome: a Zen UMC corrected error whose MCA_SYND is
	// not valid (no chip select; amd64_edac cannot place it on a rank).
	KindMemoryCENoSyndrome = "memory-ce-no-syndrome"
	KindMemoryUE           = "memory-ue"
	KindCacheCE            = "cache-ce"
	KindEDACCE             = "edac-ce"
	KindStorm              = "storm"
	// KindMemoryFailure: the kernel handles an uncorrected error on a page
	// by itself (ras:memory_failure_event), no write from anyone.
	KindMemoryFailure = "memory-failure"
)

// Injection is what a step injects. Which fields apply depends on Kind.
type Injection struct {
	Kind  string   `yaml:"kind"`
	Addr  *uint64  `yaml:"addr"`
	CPU   *int     `yaml:"cpu"`
	Count *int     `yaml:"count"`
	MC    *int     `yaml:"mc"`
	DIMM  *int     `yaml:"dimm"`
	Pages []uint64 `yaml:"pages"`
}

// ErrBadScenario wraps every problem found in a scenario file.
var ErrBadScenario = errors.New("bad scenario")

const maxScenarioBytes = 4 << 20

// LoadScenario reads and validates a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading scenario: %w", err)
	}
	return ParseScenario(path, b)
}

// yamlLine matches the "line N: message" items of yaml.v3 errors.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// ParseScenario parses a scenario; name is used in errors as name:line.
func ParseScenario(name string, data []byte) (*Scenario, error) {
	bad := func(line int, format string, a ...any) error {
		return fmt.Errorf("%w: %s:%d: %s", ErrBadScenario, name, line, fmt.Sprintf(format, a...))
	}
	if len(data) > maxScenarioBytes {
		return nil, bad(1, "file larger than %d bytes", maxScenarioBytes)
	}
	var sc Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&sc); err != nil {
		return nil, yamlError(name, err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	profileLine, stepsLine, stepLines := lines(&root)
	sc.Path = name
	prof, err := sc.Profile.WithDefaults()
	if err != nil {
		return nil, bad(profileLine, "profile: %v", err)
	}
	sc.Profile = prof
	if len(sc.Steps) == 0 {
		return nil, bad(stepsLine, "no steps")
	}
	var prevAt time.Duration
	for i := range sc.Steps {
		st := &sc.Steps[i]
		if i < len(stepLines) {
			st.Line = stepLines[i]
		}
		if err := st.validate(prof); err != nil {
			return nil, bad(st.Line, "step %d: %v", i+1, err)
		}
		if st.At != nil {
			if *st.At < prevAt {
				return nil, bad(st.Line, "step %d: at %v is before the previous step (%v)", i+1, *st.At, prevAt)
			}
			prevAt = *st.At
		} else if st.After != nil {
			prevAt += *st.After
		}
	}
	return &sc, nil
}

// yamlError turns yaml.v3's "line N: msg" errors into "name:N: msg".
func yamlError(name string, err error) error {
	var te *yaml.TypeError
	msgs := []string{err.Error()}
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	out := ""
	for i, msg := range msgs {
		if i > 0 {
			out += "; "
		}
		if m := yamlLine.FindStringSubmatch(msg); m != nil {
			out += name + ":" + m[1] + ": " + m[2]
		} else {
			out += name + ": " + msg
		}
	}
	return fmt.Errorf("%w: %s", ErrBadScenario, out)
}

// lines finds the lines of the profile, the steps key and each step.
func lines(root *yaml.Node) (profile, steps int, each []int) {
	profile, steps = 1, 1
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return
	}
	m := root.Content[0]
	if m.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		switch m.Content[i].Value {
		case "profile":
			profile = m.Content[i].Line
		case "steps":
			steps = m.Content[i].Line
			for _, s := range m.Content[i+1].Content {
				each = append(each, s.Line)
			}
		}
	}
	return
}

func (s *Step) validate(prof Profile) error {
	switch {
	case s.At != nil && s.After != nil:
		return errors.New("at and after are exclusive")
	case s.At != nil && *s.At < 0, s.After != nil && *s.After < 0:
		return errors.New("negative time")
	case s.Inject == nil:
		return errors.New("no inject")
	}
	return s.Inject.validate(prof)
}

func (in *Injection) validate(prof Profile) error {
	allowed := map[string][]string{
		KindMemoryCE:           {"addr", "cpu", "count"},
		KindMemoryCENoSyndrome: {"addr", "cpu", "count"},
		KindMemoryUE:           {"addr", "cpu"},
		KindCacheCE:            {"cpu", "count"},
		KindEDACCE:             {"mc", "dimm", "count"},
		KindStorm:              {"count", "pages"},
		KindMemoryFailure:      {"addr"},
	}
	fields, ok := allowed[in.Kind]
	if !ok {
		return fmt.Errorf("kind %q: want memory-ce, memory-ce-no-syndrome, memory-ue, cache-ce, edac-ce, storm or memory-failure", in.Kind)
	}
	set := map[string]bool{"addr": in.Addr != nil, "cpu": in.CPU != nil, "count": in.Count != nil,
		"mc": in.MC != nil, "dimm": in.DIMM != nil, "pages": in.Pages != nil}
	for _, f := range fields {
		delete(set, f)
	}
	for _, f := range []string{"addr", "cpu", "count", "mc", "dimm", "pages"} {
		if set[f] {
			return fmt.Errorf("kind %s does not take %s", in.Kind, f)
		}
	}
	need := func(ok bool, f string) error {
		if !ok {
			return fmt.Errorf("kind %s needs %s", in.Kind, f)
		}
		return nil
	}
	if in.CPU != nil && (*in.CPU < 0 || *in.CPU >= prof.CPUs) {
		return fmt.Errorf("cpu %d outside 0..%d", *in.CPU, prof.CPUs-1)
	}
	if in.Count != nil && (*in.Count < 1 || *in.Count > maxCount*10) {
		return fmt.Errorf("count %d outside 1..%d", *in.Count, maxCount*10)
	}
	if in.Addr != nil && *in.Addr>>pageShift >= prof.pages() {
		return fmt.Errorf("addr %#x beyond memory (%d MiB)", *in.Addr, prof.MemoryMB)
	}
	switch in.Kind {
	case KindMemoryCE, KindMemoryUE, KindMemoryFailure:
		return need(in.Addr != nil, "addr")
	case KindMemoryCENoSyndrome:
		if !prof.SMCA {
			return errors.New("memory-ce-no-syndrome needs a Zen profile (smca: true)")
		}
		return need(in.Addr != nil, "addr")
	case KindEDACCE:
		if err := need(in.MC != nil && in.DIMM != nil && in.Count != nil, "mc, dimm and count"); err != nil {
			return err
		}
		if !prof.EDAC {
			return errors.New("edac-ce needs a profile with edac: true")
		}
		if *in.MC < 0 || *in.MC >= prof.Controllers || *in.DIMM < 0 || *in.DIMM >= prof.DIMMsPerController {
			return fmt.Errorf("no mc%d/dimm%d in the profile", *in.MC, *in.DIMM)
		}
	case KindStorm:
		if err := need(in.Count != nil && len(in.Pages) > 0, "count and pages"); err != nil {
			return err
		}
		for _, p := range in.Pages {
			if p>>pageShift >= prof.pages() {
				return fmt.Errorf("page %#x beyond memory (%d MiB)", p, prof.MemoryMB)
			}
		}
	case KindCacheCE:
		if in.Count != nil && *in.Count > maxCount {
			return fmt.Errorf("count %d above %d", *in.Count, maxCount)
		}
	}
	return nil
}

func orZero(p *int) int {
	if p == nil {
		return 0
	}
	return *p
}

// Player plays scenarios against an Injector, on a clock tests can replace.
type Player struct {
	Injector Injector
	// Now and Sleep default to the real clock.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Play runs the steps in order, each at its time. It stops at the first
// failing injection, naming the step's line.
func (p Player) Play(ctx context.Context, sc *Scenario) error {
	now, sleep := p.Now, p.Sleep
	if now == nil {
		now = time.Now
	}
	if sleep == nil {
		sleep = sleepCtx
	}
	start := now()
	var at time.Duration
	for i, st := range sc.Steps {
		switch {
		case st.At != nil:
			at = *st.At
		case st.After != nil:
			at += *st.After
		}
		if err := sleep(ctx, start.Add(at).Sub(now())); err != nil {
			return err
		}
		if err := inject(p.Injector, st.Inject); err != nil {
			return fmt.Errorf("%s:%d: step %d: %w", sc.Path, st.Line, i+1, err)
		}
	}
	return nil
}

func inject(inj Injector, in *Injection) error {
	count := orZero(in.Count)
	switch in.Kind {
	case KindMemoryCE:
		return inj.InjectMemoryCE(*in.Addr, count, orZero(in.CPU))
	case KindMemoryCENoSyndrome:
		return inj.InjectMemoryCENoSyndrome(*in.Addr, count, orZero(in.CPU))
	case KindMemoryUE:
		return inj.InjectMemoryUE(*in.Addr, orZero(in.CPU))
	case KindCacheCE:
		return inj.InjectCacheCE(orZero(in.CPU), count)
	case KindEDACCE:
		return inj.InjectEDAC(*in.MC, *in.DIMM, uint64(count))
	case KindStorm:
		return inj.Storm(count, in.Pages)
	case KindMemoryFailure:
		return inj.KernelMemoryFailure(*in.Addr)
	}
	return fmt.Errorf("kind %q: %w", in.Kind, ErrBadScenario)
}

// Play runs a scenario against this machine on the real clock.
func (m *Machine) Play(ctx context.Context, sc *Scenario) error {
	return Player{Injector: m}.Play(ctx, sc)
}
