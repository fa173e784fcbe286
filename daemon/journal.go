package daemon

import (
	"errors"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/selfprotect/selfprotect/fault"
	"github.com/selfprotect/selfprotect/store"
)

// journalTrim is the size past which the journal is emptied once every
// decision in it is in the store: emptying it after each decision would
// add a truncate and a sync to every one.
const journalTrim = 64 << 10

// openJournal opens the decision journal beside the store. Without one,
// decisions go into the store before the kernel write, as they did before
// the journal: slower, as safe.
func (d *Daemon) openJournal() {
	path := filepath.Join(d.opts.StateDir, store.JournalFile)
	j, read, err := store.OpenJournal(path, d.now())
	if err != nil {
		d.log.WithError(err).Error("decision journal unavailable: decisions are stored before each kernel write instead")
		return
	}
	if read.Discarded > 0 {
		d.log.WithFields(logrus.Fields{"journal": path, "bytes": read.Discarded, "kept_at": read.KeptAt, "problem": read.Problem}).
			Error("the decision journal ends in a damaged record (a crash during its append leaves one; its decision never reached the kernel): cut off and kept aside")
	}
	d.journal, d.journalAtStart = j, read.Decisions
}

// importJournal stores the journaled decisions the store lacks: the last
// run stopped between a decision's journal record and its store
// transaction, maybe after the kernel write. They read as decisions whose
// outcome is unrecorded, which reconcileIntents settles against the
// kernel. The journal is emptied only once every record is in the store.
func (d *Daemon) importJournal() {
	recs := d.journalAtStart
	d.journalAtStart = nil
	imported := 0
	for _, r := range recs {
		_, err := d.store.Case(r.Case.ID)
		if err == nil {
			continue // stored after its write, as usual
		}
		if !errors.Is(err, store.ErrNotFound) {
			d.log.WithError(err).WithField("case", r.Case.ID).Error("reading a journaled case; the journal is kept for the next start")
			return
		}
		if err := d.alerts.saveIntent(d.store, r.Case, r.Intents); err != nil {
			d.log.WithError(err).WithField("case", r.Case.ID).Error("importing a journaled decision; the journal is kept for the next start")
			return
		}
		d.cases.add(r.Case)
		imported++
		d.log.WithFields(logrus.Fields{"case": r.Case.ID, "diagnosis": r.Case.Diagnosis, "suspect": r.Case.Suspect}).
			Warn("a decision the last run journaled but did not store: imported, and settled against the kernel below")
	}
	if d.journal == nil || len(recs) == 0 {
		return
	}
	if err := d.journal.Reset(); err != nil {
		d.log.WithError(err).Error("emptying the decision journal after importing it")
	}
}

// journalDecision appends a live decision to the journal, and reports
// false when it is not there (no journal, or the append failed).
func (d *Daemon) journalDecision(c fault.Case, intents []fault.Action) bool {
	if d.journal == nil {
		return false
	}
	if err := d.journal.Append(store.JournalDecision{Case: c, Intents: intents}); err != nil {
		d.log.WithError(err).WithField("case", c.ID).Error("journaling a decision failed: storing it before the kernel write instead")
		return false
	}
	d.cases.add(c)
	return true
}

// trimJournal empties the journal once it has grown past journalTrim and
// the store holds every decision in it: a held store write (full disk) may
// be one, so the journal stays while any is held.
func (d *Daemon) trimJournal() {
	if d.journal == nil || d.journal.Size() < journalTrim || d.writes.heldN.Load() > 0 {
		return
	}
	if err := d.journal.Reset(); err != nil {
		d.log.WithError(err).Error("emptying the decision journal")
	}
}
