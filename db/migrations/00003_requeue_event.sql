-- +goose Up
-- An admin's retry of a canceled or failed report leaves a report.requeued
-- event, so a case's audit trail explains why a canceled report later became
-- ready; and a cancel only touches the report when it is the report's own job.
ALTER TABLE activity_events DROP CONSTRAINT activity_events_kind_check;
ALTER TABLE activity_events ADD CONSTRAINT activity_events_kind_check
    CHECK (kind IN ('report.created', 'report.generated', 'report.failed', 'report.downloaded',
                    'report.canceled', 'report.expired', 'report.requeued'));

-- +goose StatementBegin
CREATE OR REPLACE FUNCTION tally_sync_report_from_job() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    rid text;
    rep reports%ROWTYPE;
    msg text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        rid := OLD.args ->> 'report_id';
    ELSE
        rid := NEW.args ->> 'report_id';
    END IF;
    IF rid IS NULL THEN
        RETURN NULL;
    END IF;

    IF TG_OP = 'DELETE' THEN
        UPDATE reports SET status = 'canceled', error_code = 'canceled',
               error_message = 'the report''s job was deleted by an administrator',
               error_retryable = false, completed_at = now(), updated_at = now()
         WHERE id = rid AND status IN ('pending', 'running') AND job_id = OLD.id
        RETURNING * INTO rep;
        IF FOUND THEN
            INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details)
            VALUES (rep.org_id, rep.application_id, rep.case_id, rep.id, rep.type, 'report.canceled',
                    jsonb_build_object('job_id', OLD.id, 'reason', 'job_deleted'));
        END IF;
        RETURN NULL;
    END IF;

    IF NEW.state = 'cancelled' THEN
        UPDATE reports SET status = 'canceled', error_code = 'canceled',
               error_message = 'the report''s job was canceled', error_retryable = false,
               completed_at = now(), updated_at = now()
         WHERE id = rid AND status IN ('pending', 'running') AND (job_id IS NULL OR job_id = NEW.id)
        RETURNING * INTO rep;
        IF FOUND THEN
            INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details)
            VALUES (rep.org_id, rep.application_id, rep.case_id, rep.id, rep.type, 'report.canceled',
                    jsonb_build_object('job_id', NEW.id));
        END IF;
    ELSIF NEW.state = 'discarded' THEN
        msg := coalesce(NEW.errors[array_length(NEW.errors, 1)] ->> 'error', 'the job ran out of attempts');
        UPDATE reports SET status = 'failed', error_code = 'job_discarded',
               error_message = left('report generation failed after ' || NEW.attempt || ' attempts: ' || msg, 1000),
               error_retryable = true, completed_at = now(), updated_at = now()
         WHERE id = rid AND status IN ('pending', 'running')
        RETURNING * INTO rep;
        IF FOUND THEN
            INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details)
            VALUES (rep.org_id, rep.application_id, rep.case_id, rep.id, rep.type, 'report.failed',
                    jsonb_build_object('job_id', NEW.id, 'code', 'job_discarded'));
        END IF;
    ELSIF NEW.state IN ('available', 'scheduled', 'pending') AND OLD.state IN ('cancelled', 'discarded') THEN
        UPDATE reports SET status = 'pending', error_code = NULL, error_message = NULL,
               error_retryable = NULL, completed_at = NULL, updated_at = now(), job_id = NEW.id
         WHERE id = rid AND status IN ('failed', 'canceled')
        RETURNING * INTO rep;
        IF FOUND THEN
            INSERT INTO activity_events (org_id, application_id, case_id, report_id, report_type, kind, details)
            VALUES (rep.org_id, rep.application_id, rep.case_id, rep.id, rep.type, 'report.requeued',
                    jsonb_build_object('job_id', NEW.id, 'from_state', OLD.state));
        END IF;
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- +goose Down
ALTER TABLE activity_events DROP CONSTRAINT activity_events_kind_check;
ALTER TABLE activity_events ADD CONSTRAINT activity_events_kind_check
    CHECK (kind IN ('report.created', 'report.generated', 'report.failed', 'report.downloaded',
                    'report.canceled', 'report.expired'));
