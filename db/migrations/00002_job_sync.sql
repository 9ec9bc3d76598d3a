-- +goose Up
-- Keeps each report in step with its River job, whoever changes the job:
-- a worker, River's rescuer and cleaner, or an admin in River UI. The report
-- row follows in the same transaction as the job change, so the two never
-- disagree, and each change a user should see leaves an activity event.
--
--   job cancelled                 -> report canceled (when pending or running; a
--                                    worker that gives up marks it failed first)
--   job discarded                 -> report failed, code job_discarded (unless final)
--   job made available again from
--   cancelled or discarded        -> report pending (an admin's retry)
--   job deleted while report open -> report canceled

-- +goose StatementBegin
CREATE FUNCTION tally_sync_report_from_job() RETURNS trigger
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
         WHERE id = rid AND status IN ('pending', 'running')
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
         WHERE id = rid AND status IN ('failed', 'canceled');
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER tally_sync_report_from_job_update
    AFTER UPDATE OF state ON river_job
    FOR EACH ROW
    WHEN (NEW.kind = 'generate_report' AND OLD.state IS DISTINCT FROM NEW.state)
    EXECUTE FUNCTION tally_sync_report_from_job();

CREATE TRIGGER tally_sync_report_from_job_delete
    AFTER DELETE ON river_job
    FOR EACH ROW
    WHEN (OLD.kind = 'generate_report' AND OLD.state NOT IN ('completed', 'cancelled', 'discarded'))
    EXECUTE FUNCTION tally_sync_report_from_job();

-- +goose Down
DROP TRIGGER tally_sync_report_from_job_delete ON river_job;
DROP TRIGGER tally_sync_report_from_job_update ON river_job;
DROP FUNCTION tally_sync_report_from_job();
