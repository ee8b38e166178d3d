package polite

import (
	"context"
	"time"
)

// minDeadlineMargin is the least time a wait must leave before the request's deadline. A wait that would
// end later than the deadline less the margin is not started: the request would go out with no time to
// make its round trip, so it fails at once instead (the retry layer returns the last response, the
// throttle a [*ThrottleError]).
const minDeadlineMargin = 100 * time.Millisecond

// endsTooLate reports whether a wait until the given time would leave less than the margin before ctx's
// deadline. The margin is the larger of minDeadlineMargin and rtt, the round trip the request is known to
// take (0 when unknown).
func endsTooLate(ctx context.Context, until time.Time, rtt time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && until.Add(max(minDeadlineMargin, rtt)).After(dl)
}
