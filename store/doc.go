// Package store keeps the daemon's durable state in one SQLite file: the
// event history (with retention), cases with their evidence, the actions
// taken on them, and from those the isolation memory that lets the daemon
// never act twice on a resource and re-isolate after a reboot.
//
// One process writes (the daemon, through a single connection, so two
// writers can never interleave); any number of processes read through
// OpenReadOnly while it runs. The file is in WAL mode, so readers see the
// last committed state and are never blocked by the writer's transaction.
//
// Encoding rules, shared by every table:
//   - times are INTEGER Unix nanoseconds, 0 for the zero time.Time, and come
//     back in UTC;
//   - uint64 register values (status, addr, misc, synd, ipid, phys_addr) are
//     stored as the int64 with the same bits, since SQLite integers are
//     signed: 0x9c00000000000090 reads back as a negative number in the
//     sqlite3 shell (printf('0x%x', status) shows it in hex);
//   - integer identifiers use -1 (fault.Unknown) for "unknown", never NULL;
//   - enums (class, severity, vendor, state, outcome) are their text names.
//
// Schema (version 4; schema.go's migrations are the authority):
//
//	migrations(version INTEGER PRIMARY KEY, applied INTEGER)
//
//	events(id INTEGER PRIMARY KEY,
//	       received, recorded INTEGER,           -- unix ns
//	       source, class, severity, vendor TEXT,
//	       count, cpu, socket, bank, cache_level, core_bank INTEGER,
//	       status, addr, misc, synd, ipid INTEGER, -- uint64 bit patterns
//	       phys_addr INTEGER, addr_valid INTEGER, addr_lsb INTEGER,
//	       mc INTEGER, dimm_label TEXT, layer0, layer1, layer2 INTEGER,
//	       row, detail TEXT,
//	       channel INTEGER,    -- v3: MCA channel/UMC, -1 unknown
//	       located_by TEXT,    -- v3: how dimm_label was found
//	       chip_select INTEGER) -- v4: AMD UMC chip select, -1 unknown
//	  index events_received(received)
//
//	cases(id TEXT PRIMARY KEY, opened INTEGER, rule, diagnosis, suspect TEXT,
//	      also TEXT,      -- JSON array of resources
//	      fru, state, summary TEXT,
//	      evidence TEXT,  -- JSON array of evidence, times RFC3339Nano,
//	                      -- status and addr as "0x..." strings
//	      )
//	  index cases_opened(opened)
//
//	case_states(id INTEGER PRIMARY KEY, case_id TEXT REFERENCES cases,
//	            at INTEGER, state TEXT, note TEXT)  -- every state change
//	  index case_states_case(case_id, at)
//
//	actions(id INTEGER PRIMARY KEY, case_id TEXT REFERENCES cases,
//	        at INTEGER, resource, kind, outcome TEXT,
//	        violations TEXT,  -- JSON array of budget names
//	        attempts INTEGER, detail, undo TEXT)
//	  index actions_case(case_id, at), actions_resource(resource, at)
//
//	outbox(id INTEGER PRIMARY KEY,          -- v2: one row per alert x notifier
//	       alert_id, subject, transition, notifier TEXT,
//	       payload TEXT,                    -- the alert as JSON
//	       created, next_attempt INTEGER, attempts INTEGER,
//	       last_error, state TEXT, done INTEGER,
//	       UNIQUE(subject, transition, notifier))
//	  index outbox_due(state, next_attempt), outbox_notifier(notifier, state)
//	outbox_overflow(notifier TEXT PRIMARY KEY, dropped, last INTEGER)
//
// Isolation memory is derived, not stored: see Isolated and ActedOn.
package store
