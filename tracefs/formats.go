package tracefs

// Formats is the set of event formats one ring buffer can hold, looked up by
// the event ID every record starts with. It is read-only after construction,
// so readers on several CPUs share it without locking.
type Formats struct {
	byID   map[uint16]*Format
	byName map[string]*Format
	order  []*Format
}

// NewFormats indexes the given formats. Nil entries are ignored. When two
// formats share an ID the later one wins: IDs are unique within one kernel,
// so a clash means formats from two kernels were mixed, and the newest load
// is the one that matches the running kernel.
func NewFormats(fs ...*Format) *Formats {
	r := &Formats{byID: make(map[uint16]*Format, len(fs)), byName: make(map[string]*Format, len(fs))}
	for _, f := range fs {
		if f == nil {
			continue
		}
		if old, ok := r.byID[f.ID]; ok {
			delete(r.byName, old.System+"/"+old.Name)
			r.order = removeFormat(r.order, old)
		}
		r.byID[f.ID] = f
		r.byName[f.System+"/"+f.Name] = f
		r.order = append(r.order, f)
	}
	return r
}

func removeFormat(list []*Format, f *Format) []*Format {
	out := list[:0]
	for _, x := range list {
		if x != f {
			out = append(out, x)
		}
	}
	return out
}

// ByID returns the format of the event with the given ID.
func (r *Formats) ByID(id uint16) (*Format, bool) {
	if r == nil {
		return nil, false
	}
	f, ok := r.byID[id]
	return f, ok
}

// ByName returns the format of "system/name", e.g. "mce/mce_record".
func (r *Formats) ByName(key string) (*Format, bool) {
	if r == nil {
		return nil, false
	}
	f, ok := r.byName[key]
	return f, ok
}

// All returns the formats in the order they were added.
func (r *Formats) All() []*Format {
	if r == nil {
		return nil
	}
	return append([]*Format(nil), r.order...)
}

// Len is the number of formats held.
func (r *Formats) Len() int {
	if r == nil {
		return 0
	}
	return len(r.order)
}

// Key is the "system/name" string decoders are registered under.
func (f *Format) Key() string { return f.System + "/" + f.Name }
