package report

import (
	"bufio"
	"fmt"
	"io"
	"time"
)

// ActivityLogHeader is the first line of every activity_log file.
const ActivityLogHeader = "occurred_at,event,report_id,report_type,actor_id,actor_email,actor_name,client_ip,user_agent,hash\n"

// SystemActor is the actor_email of events written by Tally itself (workers).
const SystemActor = "system"

// Event is one activity event of a case.
type Event struct {
	OccurredAt time.Time
	Kind       string // report.created, report.generated, ...
	ReportID   string
	ReportType string
	ActorID    string // empty for the system
	ActorEmail string
	ActorName  string
	// ClientIP and UserAgent are the request's, for events caused by a
	// request (report.created, report.downloaded,
	// report.download_refused); empty otherwise.
	ClientIP  string
	UserAgent string
	// Hash is the event's hash in its organization's activity chain (hex),
	// so that an auditor can check continuity against a signed checkpoint.
	Hash string
}

// ActivityLogWriter writes an activity_log CSV file: one row per event, in
// the order given (oldest first). Call Close at the end.
type ActivityLogWriter struct {
	w      *bufio.Writer
	row    []byte
	err    error
	count  int64
	closed bool
}

// NewActivityLogWriter returns a writer of an activity_log file to w. The
// header is written at once (through the buffer).
func NewActivityLogWriter(w io.Writer) *ActivityLogWriter {
	a := &ActivityLogWriter{w: bufio.NewWriterSize(w, bufferSize), row: make([]byte, 0, 256)}
	a.write([]byte(ActivityLogHeader))
	return a
}

func (a *ActivityLogWriter) write(b []byte) {
	if a.err != nil {
		return
	}
	if _, err := a.w.Write(b); err != nil {
		a.err = fmt.Errorf("writing report: %w", err)
	}
}

// WriteEvent adds one event. An event without an actor is the system's: its
// actor_id is empty and its actor_email is "system".
func (a *ActivityLogWriter) WriteEvent(e *Event) error {
	if a.closed {
		return ErrWriterClosed
	}
	if a.err != nil {
		return a.err
	}
	r := e.OccurredAt.UTC().AppendFormat(a.row[:0], time.RFC3339Nano)
	r = append(r, ',')
	r = appendTextField(r, e.Kind)
	r = append(r, ',')
	r = appendTextField(r, e.ReportID)
	r = append(r, ',')
	r = appendTextField(r, e.ReportType)
	r = append(r, ',')
	if e.ActorID == "" {
		r = append(r, ","+SystemActor+","...)
	} else {
		r = appendTextField(r, e.ActorID)
		r = append(r, ',')
		r = appendTextField(r, e.ActorEmail)
		r = append(r, ',')
		r = appendTextField(r, e.ActorName)
	}
	r = append(r, ',')
	r = appendTextField(r, e.ClientIP)
	r = append(r, ',')
	r = appendTextField(r, e.UserAgent)
	r = append(r, ',')
	r = appendTextField(r, e.Hash)
	r = append(r, '\n')
	a.row = r
	a.count++
	a.write(r)
	return a.err
}

// Close flushes the file and returns its summary. It does not close the
// underlying writer.
func (a *ActivityLogWriter) Close() (Summary, error) {
	if a.closed {
		return Summary{}, ErrWriterClosed
	}
	a.closed = true
	if a.err == nil {
		if err := a.w.Flush(); err != nil {
			a.err = fmt.Errorf("writing report: %w", err)
		}
	}
	if a.err != nil {
		return Summary{}, a.err
	}
	return Summary{RowCount: a.count}, nil
}
