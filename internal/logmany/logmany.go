// Package logmany logs one change that many items went through alike: a
// line per item when they are few, one line with their count when they are
// many. A start-up binding 1,000 VIPs wrote 1,000 lines, and a shutdown's
// hundred "VIP withdrawn" lines took 38 ms of a 140 ms stop under emulation;
// an operator reading the log wants the count and the range, and the
// details stay at debug level (and in the event log).
package logmany

import "log/slog"

// MaxLines is how many items are logged one line each; more are logged in
// one line. routing/kernel (VIPs bound and unbound) and the announcer (VIPs
// advertised and withdrawn) share it, so both summarise at the same point.
const MaxLines = 8

// Log logs msg at Info with key set to each item, and reason when it is not
// empty. More than MaxLines items are each logged at Debug instead, and then
// one line plural at Info gives their count, the first and the last, and
// says that each is logged at debug level.
func Log(log *slog.Logger, msg, plural, key string, items []string, reason string) {
	if len(items) <= MaxLines {
		for _, it := range items {
			log.Info(msg, attrs(key, it, reason)...)
		}
		return
	}
	for _, it := range items {
		log.Debug(msg, attrs(key, it, reason)...)
	}
	summary := "each is logged at debug level"
	if reason != "" {
		summary = reason + "; " + summary
	}
	log.Info(plural, "count", len(items), "first", items[0], "last", items[len(items)-1], "reason", summary)
}

func attrs(key, item, reason string) []any {
	if reason == "" {
		return []any{key, item}
	}
	return []any{key, item, "reason", reason}
}
