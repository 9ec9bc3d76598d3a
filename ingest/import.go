package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tally-compliance/tally/db"
)

// ErrAlreadyImported means the database already holds a row of the file:
// an external_id is imported into the application already.
var ErrAlreadyImported = errors.New("an external_id of the file is already imported into the application")

// ImportOpts tunes Import. A nil *ImportOpts keeps the defaults.
type ImportOpts struct {
	// Validated, when set, is called once the file is valid, with its
	// number of rows, before copying starts.
	Validated func(rows int64)
	// Progress, when set, is called with the number of rows sent to the
	// database so far, every few thousand rows and once at the end.
	Progress func(rows int64)
}

// ImportResult says what Import loaded.
type ImportResult struct {
	Rows int64
	// IngestedAt is every row's ingested_at: the now() of the import's
	// transaction, on the database's clock.
	IngestedAt time.Time
}

// Import loads an import file into an application, all or nothing.
//
// It reads f twice. The first pass validates every row: if any is invalid
// Import returns a *ValidationError naming the lines and the database is not
// touched. The second pass seeks back to the start and streams the rows into
// COPY in one transaction, so that a row the database refuses leaves nothing
// behind either; an external_id imported before is ErrAlreadyImported.
//
// The rows count for the reports created after that transaction commits,
// never for those created while it is open (see db.ScopeParams). Their
// ingested_at, informational, is the transaction's now(): the database's
// clock, not this process's.
func Import(ctx context.Context, q db.DBTX, applicationID string, f io.ReadSeeker, opts *ImportOpts) (*ImportResult, error) {
	if opts == nil {
		opts = &ImportOpts{}
	}
	if applicationID == "" {
		return nil, errors.New("importing: no application id")
	}
	valid, err := ValidateCSV(ctxReader{ctx, f}, nil)
	if err != nil {
		return nil, err
	}
	if opts.Validated != nil {
		opts.Validated(int64(valid))
	}

	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewinding the file for the copy: %w", err)
	}
	src := &importSource{
		r:        NewReader(ctxReader{ctx, f}),
		appID:    applicationID,
		progress: opts.Progress,
	}
	var n int64
	err = db.WithTx(ctx, q, func(tx pgx.Tx) error {
		if src.ingestedAt, err = db.Now(ctx, tx); err != nil {
			return err
		}
		n, err = db.CopyTransactions(ctx, tx, src)
		if err != nil {
			return err
		}
		if n != int64(valid) {
			return fmt.Errorf("the file changed during the import: %d rows validated, %d copied", valid, n)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, db.ErrConflict) {
			err = fmt.Errorf("%w (%w)", ErrAlreadyImported, err)
		}
		return nil, fmt.Errorf("importing into %s: nothing imported: %w", applicationID, err)
	}
	return &ImportResult{Rows: n, IngestedAt: src.ingestedAt}, nil
}

// importSource streams the rows of a validated file into COPY.
type importSource struct {
	r          *Reader
	appID      string
	ingestedAt time.Time
	progress   func(rows int64)
	rows       int64
	done       bool
	err        error
}

func (s *importSource) Next() bool {
	t, err := s.r.Read()
	if errors.Is(err, io.EOF) {
		if !s.done && s.progress != nil {
			s.progress(s.rows)
		}
		s.done = true
		return false
	}
	if err != nil {
		var le *LineError
		if errors.As(err, &le) {
			err = fmt.Errorf("the file changed during the import: %w", err)
		}
		s.err = err
		return false
	}
	t.ApplicationID = s.appID
	t.IngestedAt = s.ingestedAt
	s.rows++
	if s.progress != nil && s.rows%progressEvery == 0 {
		s.progress(s.rows)
	}
	return true
}

func (s *importSource) Values() ([]any, error) { return db.TransactionValues(&s.r.t), nil }

func (s *importSource) Err() error { return s.err }

// ctxReader stops reading once ctx is done, so that an interrupt ends the
// validation pass of a large file promptly.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}
