package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/tally-compliance/tally/config"
	"github.com/tally-compliance/tally/db"
	"github.com/tally-compliance/tally/evidence"
)

func newVerifyCmd(d *deps) *cobra.Command {
	var manifestPath, keysPath string
	cmd := &cobra.Command{
		Use:   "verify --manifest manifest.json --keys keys.json FILE",
		Short: "Check a report file against its signed manifest, offline",
		Long: `verify checks, with no database and no network, that FILE is the report its
signed manifest describes: the manifest's Ed25519 signature verifies with a key
of the JWK set (GET /.well-known/tally-signing-keys), and FILE has the
manifest's size and SHA-256. manifest.json is the answer of
GET .../reports/{reportId}/manifest. It prints what failed and exits non-zero.`,
		Example: `  tallyctl verify --manifest manifest.json --keys keys.json report.csv`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			doc, err := os.ReadFile(manifestPath)
			if err != nil {
				return err
			}
			keysDoc, err := os.ReadFile(keysPath)
			if err != nil {
				return err
			}
			keys, err := evidence.ParseJWKSet(keysDoc)
			if err != nil {
				return err
			}
			m, err := evidence.VerifySigned(doc, keys)
			if err != nil {
				return fmt.Errorf("%s: %w", manifestPath, err)
			}
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			if err := evidence.VerifyFile(m, f); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			d.println(fmt.Sprintf("OK: %s is report %s (%s, %d bytes, sha256 %s), signed by key %s",
				args[0], m.ReportID, m.Type, m.SizeBytes, m.SHA256, m.KeyID))
			return nil
		},
	}
	cmd.Flags().StringVar(&manifestPath, "manifest", "", "the signed manifest document (required)")
	cmd.Flags().StringVar(&keysPath, "keys", "", "the JWK set of signing keys (required)")
	mustRequire(cmd, "manifest")
	mustRequire(cmd, "keys")
	return cmd
}

func newAuditCmd(d *deps) *cobra.Command {
	cmd := groupCmd("audit", "Check the activity log's hash chain")
	cmd.AddCommand(newAuditVerifyCmd(d))
	return cmd
}

func newAuditVerifyCmd(d *deps) *cobra.Command {
	var orgID, keysPath string
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "verify --org org_…",
		Short: "Walk an organization's activity chain and checkpoints; name the first event changed, removed or inserted",
		Long: `audit verify recomputes every activity event's hash of the organization, in
chain order, checks that each links to the one before it, then checks every
signed checkpoint of the chain head. It names the first event that was changed,
removed or inserted, and exits non-zero. Events are chained after they commit,
by the workers' sequencer (every TALLY_CHAIN_INTERVAL): events not chained yet
are reported as pending, and one older than --pending-grace is an error (no
sequencer runs, or the event was slipped in behind it). Checkpoint signatures are checked with
the keys in the database, or with --keys (a JWK set held elsewhere), which an
administrator of the database cannot rewrite.`,
		Example: `  tallyctl audit verify --org org_01j…
  tallyctl audit verify --org org_01j… --keys keys.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			pool, err := d.db(ctx)
			if err != nil {
				return err
			}
			var keys []evidence.Key
			if keysPath != "" {
				doc, err := os.ReadFile(keysPath)
				if err != nil {
					return err
				}
				if keys, err = evidence.ParseJWKSet(doc); err != nil {
					return err
				}
			} else {
				stored, err := db.ListSigningKeys(ctx, pool)
				if err != nil {
					return err
				}
				for _, k := range stored {
					keys = append(keys, evidence.Key{ID: k.ID, Public: k.PublicKey})
				}
			}
			var v evidence.ChainVerifier
			err = db.StreamOrgChain(ctx, pool, orgID, func(e *db.ChainEvent) error {
				if e.Missing {
					return v.Removed(e.ID, e.Seq)
				}
				return v.Add(&evidence.ChainEvent{
					ID: e.ID, OrgID: e.OrgID, ApplicationID: e.ApplicationID, CaseID: e.CaseID, ReportID: e.ReportID,
					ReportType: e.ReportType, Kind: e.Kind, ActorID: e.ActorID, OccurredAt: e.OccurredAt,
					Details: e.Details, Xact: e.Xact, Seq: e.Seq, PrevHash: e.PrevHash, Hash: e.Hash,
				})
			})
			if err != nil {
				return fmt.Errorf("activity chain of %s: %w", orgID, err)
			}
			cps, err := db.ListCheckpoints(ctx, pool, orgID)
			if err != nil {
				return err
			}
			for _, c := range cps {
				if err := v.Checkpoint([]byte(c.Payload), c.Signature, keys); err != nil {
					return fmt.Errorf("activity chain of %s: %w", orgID, err)
				}
			}
			// Events the sequencer has not chained yet are not evidence yet:
			// they are reported, and an old one is an error.
			pending, err := db.ListUnchainedEvents(ctx, pool, orgID)
			if err != nil {
				return err
			}
			now := time.Now()
			for _, e := range pending {
				if age := now.Sub(e.OccurredAt); age > grace {
					return fmt.Errorf("activity chain of %s: event %d (occurred %s, %s ago) is not chained: "+
						"no worker is running the sequencer, a database transaction older than the event has been open that long, "+
						"or the event was inserted behind the sequencer's back",
						orgID, e.ID, e.OccurredAt.UTC().Format(time.RFC3339), age.Round(time.Second))
				}
			}
			msg := fmt.Sprintf("OK: %d events, %d checkpoints; head %s", v.Len(), len(cps), hex.EncodeToString(v.Head()))
			if len(pending) > 0 {
				msg += fmt.Sprintf("; %d event(s) pending, not chained yet (the oldest is event %d)", len(pending), pending[0].ID)
			}
			d.println(msg)
			return nil
		},
	}
	cmd.Flags().StringVar(&orgID, "org", "", "organization id, org_… (required)")
	cmd.Flags().StringVar(&keysPath, "keys", "", "JWK set to check checkpoint signatures with (default: the database's keys)")
	cmd.Flags().DurationVar(&grace, "pending-grace", config.DefaultChainPendingGrace, "age above which an event not chained yet is an error")
	mustRequire(cmd, "org")
	return cmd
}
