package jobs

import "github.com/riverqueue/river/rivertype"

// uniqueStates are the states in which a second job for the same report is
// refused. River requires available, pending, running and scheduled.
var uniqueStates = []rivertype.JobState{
	rivertype.JobStateAvailable,
	rivertype.JobStatePending,
	rivertype.JobStateRetryable,
	rivertype.JobStateRunning,
	rivertype.JobStateScheduled,
}
