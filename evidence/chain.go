package evidence

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// ChainEvent is an activity event as its hash covers it.
type ChainEvent struct {
	ID            int64
	OrgID         string
	ApplicationID string
	CaseID        string
	ReportID      string
	ReportType    string
	Kind          string
	ActorID       *string
	OccurredAt    time.Time
	Details       string // the jsonb's text form
	Xact          string
	Seq           int64
	PrevHash      []byte
	Hash          []byte
}

// GenesisHash is the prev_hash of an organization's first event.
var GenesisHash = make([]byte, sha256.Size)

// EventCanonical returns the canonical form of an event: the RFC 8785 JSON
// object of its stored fields (actor_id null for the system, details as the
// string of its jsonb text, occurred_at in UTC with microseconds, xact as a
// string). PostgreSQL's tally_activity_canonical writes the same bytes.
func EventCanonical(e *ChainEvent) []byte {
	b := make([]byte, 0, 512)
	b = append(b, `{"actor_id":`...)
	if e.ActorID == nil {
		b = append(b, "null"...)
	} else {
		b = AppendString(b, *e.ActorID)
	}
	b = append(b, `,"application_id":`...)
	b = AppendString(b, e.ApplicationID)
	b = append(b, `,"case_id":`...)
	b = AppendString(b, e.CaseID)
	b = append(b, `,"details":`...)
	b = AppendString(b, e.Details)
	b = append(b, `,"id":`...)
	b = strconv.AppendInt(b, e.ID, 10)
	b = append(b, `,"kind":`...)
	b = AppendString(b, e.Kind)
	b = append(b, `,"occurred_at":"`...)
	b = e.OccurredAt.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z")
	b = append(b, `","org_id":`...)
	b = AppendString(b, e.OrgID)
	b = append(b, `,"report_id":`...)
	b = AppendString(b, e.ReportID)
	b = append(b, `,"report_type":`...)
	b = AppendString(b, e.ReportType)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, e.Seq, 10)
	b = append(b, `,"xact":`...)
	b = AppendString(b, e.Xact)
	return append(b, '}')
}

// EventHash returns sha256(prev || canonical).
func EventHash(prev, canonical []byte) []byte {
	h := sha256.New()
	h.Write(prev)
	h.Write(canonical)
	return h.Sum(nil)
}

// ChainError names the first event where a chain stops being intact.
type ChainError struct {
	EventID int64 // 0 when no single event is to blame (a checkpoint)
	Seq     int64
	Msg     string
}

func (e *ChainError) Error() string { return e.Msg }

// ChainVerifier walks one organization's events in chain order (Add each,
// by chain_seq then id) and then its checkpoints (Checkpoint each).
type ChainVerifier struct {
	hashes [][]byte // hash of the event at seq i+1, as accepted
	ids    []int64
}

// Len is the number of events walked.
func (v *ChainVerifier) Len() int64 { return int64(len(v.hashes)) }

// Head returns the hash of the last event walked (GenesisHash if none).
func (v *ChainVerifier) Head() []byte {
	if len(v.hashes) == 0 {
		return GenesisHash
	}
	return v.hashes[len(v.hashes)-1]
}

// Add checks the next event: its hash covers its fields and its predecessor,
// and it follows the last event walked. It says what was changed, removed
// or inserted at the first event where that fails.
func (v *ChainVerifier) Add(e *ChainEvent) error {
	want := v.Len() + 1
	if !bytes.Equal(EventHash(e.PrevHash, EventCanonical(e)), e.Hash) {
		// A forger who inserts or removes an event must renumber the ones
		// after it; an event whose hash holds with its old seq names that.
		n := len(v.hashes)
		if orig := *e; n >= 1 {
			orig.Seq = e.Seq - 1
			if bytes.Equal(EventHash(e.PrevHash, EventCanonical(&orig)), e.Hash) && bytes.Equal(e.PrevHash, prevOr(v.hashes, n-2)) {
				return &ChainError{v.ids[n-1], want - 1, fmt.Sprintf(
					"event %d (seq %d) was inserted: event %d after it chains to the event before it", v.ids[n-1], want-1, e.ID)}
			}
		}
		orig := *e
		orig.Seq = e.Seq + 1
		if bytes.Equal(EventHash(e.PrevHash, EventCanonical(&orig)), e.Hash) {
			return &ChainError{e.ID, want, fmt.Sprintf(
				"event(s) removed before event %d: it was seq %d and was renumbered", e.ID, orig.Seq)}
		}
		return &ChainError{e.ID, e.Seq, fmt.Sprintf("event %d (seq %d) was changed: its fields do not match its hash", e.ID, e.Seq)}
	}
	if !bytes.Equal(e.PrevHash, v.Head()) {
		n := len(v.hashes)
		switch {
		case n >= 1 && bytes.Equal(e.PrevHash, prevOr(v.hashes, n-2)):
			return &ChainError{v.ids[n-1], want - 1, fmt.Sprintf(
				"event %d (seq %d) was inserted: event %d after it chains to the event before it", v.ids[n-1], want-1, e.ID)}
		case e.Seq > want:
			return &ChainError{e.ID, want, fmt.Sprintf(
				"%d event(s) removed before event %d: the chain goes from seq %d to seq %d", e.Seq-want, e.ID, want-1, e.Seq)}
		default:
			return &ChainError{e.ID, e.Seq, fmt.Sprintf(
				"event %d (seq %d) does not chain to the event before it: an event before it was changed, removed or inserted", e.ID, e.Seq)}
		}
	}
	if e.Seq != want {
		return &ChainError{e.ID, e.Seq, fmt.Sprintf("event %d has seq %d, want %d: the chain was renumbered", e.ID, e.Seq, want)}
	}
	v.hashes = append(v.hashes, e.Hash)
	v.ids = append(v.ids, e.ID)
	return nil
}

// Removed reports the chain position seq, which names event eventID, as
// the first break: the event's row is gone while its position remains.
func (v *ChainVerifier) Removed(eventID, seq int64) error {
	return &ChainError{EventID: eventID, Seq: seq, Msg: fmt.Sprintf(
		"event %d (seq %d) was removed: its chain position remains, its row is gone", eventID, seq)}
}

func prevOr(hashes [][]byte, i int) []byte {
	if i < 0 {
		return GenesisHash
	}
	return hashes[i]
}

// CheckpointPayload is what a checkpoint signs: an organization's chain
// head at one moment.
type CheckpointPayload struct {
	OrgID    string `json:"org_id"`
	Seq      int64  `json:"seq"`
	Hash     string `json:"hash"` // hex
	SignedAt string `json:"signed_at"`
	KeyID    string `json:"key_id"`
}

// SignCheckpoint returns the canonical payload and its signature.
func SignCheckpoint(key Key, p *CheckpointPayload) (canonical, sig []byte, err error) {
	p.KeyID = key.ID
	canonical, err = Canonical(p)
	if err != nil {
		return nil, nil, err
	}
	return canonical, ed25519.Sign(key.Private, canonical), nil
}

// Checkpoint checks a signed checkpoint (its canonical payload and
// signature) against keys and the chain walked so far: the events up to its
// seq must all still be there, with the hash it signed.
func (v *ChainVerifier) Checkpoint(payload, sig []byte, keys []Key) error {
	var p CheckpointPayload
	if err := json.Unmarshal(payload, &p); err != nil {
		return &ChainError{Msg: "a checkpoint's payload is unreadable: " + err.Error()}
	}
	var key *Key
	for i := range keys {
		if keys[i].ID == p.KeyID {
			key = &keys[i]
		}
	}
	if key == nil {
		return &ChainError{Msg: fmt.Sprintf("the checkpoint of seq %d is signed by unknown key %q", p.Seq, p.KeyID)}
	}
	if !ed25519.Verify(key.Public, payload, sig) {
		return &ChainError{Msg: fmt.Sprintf("the checkpoint of seq %d (signed at %s) has a bad signature: it was changed", p.Seq, p.SignedAt)}
	}
	if p.Seq > v.Len() {
		return &ChainError{Seq: v.Len() + 1, Msg: fmt.Sprintf(
			"event(s) removed after seq %d: the checkpoint signed at %s covers seq %d", v.Len(), p.SignedAt, p.Seq)}
	}
	if got := hex.EncodeToString(v.hashes[p.Seq-1]); got != p.Hash {
		return &ChainError{EventID: v.ids[p.Seq-1], Seq: p.Seq, Msg: fmt.Sprintf(
			"the chain up to seq %d (event %d) differs from the checkpoint signed at %s: events at or before it were rewritten",
			p.Seq, v.ids[p.Seq-1], p.SignedAt)}
	}
	return nil
}
