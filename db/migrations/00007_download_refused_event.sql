-- +goose Up
-- An auditor's download refused by the case rules (case revoked or closed,
-- not assigned, access window closed) is part of the case's audit trail.
ALTER TABLE activity_events DROP CONSTRAINT activity_events_kind_check;
ALTER TABLE activity_events ADD CONSTRAINT activity_events_kind_check
    CHECK (kind IN ('report.created', 'report.generated', 'report.failed', 'report.downloaded',
                    'report.canceled', 'report.expired', 'report.requeued', 'report.download_refused'));

-- +goose Down
DELETE FROM activity_events WHERE kind = 'report.download_refused';
ALTER TABLE activity_events DROP CONSTRAINT activity_events_kind_check;
ALTER TABLE activity_events ADD CONSTRAINT activity_events_kind_check
    CHECK (kind IN ('report.created', 'report.generated', 'report.failed', 'report.downloaded',
                    'report.canceled', 'report.expired', 'report.requeued'));
