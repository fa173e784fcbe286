package daemon

import "github.com/selfprotect/selfprotect/fault"

// isolatedSet is every resource found or made isolated (never act twice),
// with its pages counted as they come and go: the page budget takes the
// count on the way to every offline, where a walk of the set would grow
// with every page a long-lived host has retired. Guarded by Daemon.mu.
type isolatedSet struct {
	all   map[fault.Resource]bool // read it; change it through add and remove
	pages uint64
}

func newIsolatedSet() isolatedSet { return isolatedSet{all: map[fault.Resource]bool{}} }

func (s *isolatedSet) has(r fault.Resource) bool { return s.all[r] }

func (s *isolatedSet) add(r fault.Resource) {
	if s.all[r] {
		return
	}
	s.all[r] = true
	if r.Kind() == fault.KindPage {
		s.pages++
	}
}

func (s *isolatedSet) remove(r fault.Resource) {
	if !s.all[r] {
		return
	}
	delete(s.all, r)
	if r.Kind() == fault.KindPage {
		s.pages--
	}
}
