package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newStorageCmd(d *deps) *cobra.Command {
	cmd := groupCmd("storage", "Prepare the object store")
	cmd.AddCommand(newStorageInitCmd(d))
	return cmd
}

func newStorageInitCmd(d *deps) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the report bucket (S3_BUCKET) unless it exists, and check it can be reached",
		Long: `init creates the bucket named by S3_BUCKET on the object store named by the S3_*
variables, through the S3 API, unless it already exists, and then checks that
the bucket answers with these credentials. Running it again changes nothing.
Compose runs it once before the API and the workers start; on AWS S3, where
the bucket is usually made by infrastructure code, it only checks access.`,
		Example: `  tallyctl storage init`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			store, err := d.openStore()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := store.EnsureBucket(ctx); err != nil {
				return fmt.Errorf("creating the bucket: %w", err)
			}
			if err := store.Ping(ctx); err != nil {
				return fmt.Errorf("checking the bucket: %w", err)
			}
			d.println(fmt.Sprintf("bucket %s ready", store.Bucket()))
			return nil
		},
	}
}
