-- +goose Up
-- Every change of a report's status notifies channel tally_report_status
-- with the report's id, from the transaction that changes it: the API's
-- waiting requests (Prefer: wait) learn of it when it commits, whoever wrote
-- it (a worker, the job-sync triggers, expiry, an admin's SQL). PostgreSQL
-- delivers notifications only on commit and drops them on rollback.
-- +goose StatementBegin
CREATE FUNCTION tally_notify_report_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tally_report_status', NEW.id);
    RETURN NULL;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER reports_status_notify
    AFTER UPDATE OF status ON reports
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION tally_notify_report_status();

-- +goose Down
DROP TRIGGER reports_status_notify ON reports;
DROP FUNCTION tally_notify_report_status();
