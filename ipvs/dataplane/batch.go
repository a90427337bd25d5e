package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/internal/progress"
	"github.com/anycast-director/director/ipvs"
)

// writeBatch holds the writes of several services until they go to the
// kernel together: at 100 services under emulation, one request (and one
// answer) per write made the writes of a reload changing one weight
// everywhere take a quarter to half a second.
type writeBatch struct {
	services []pendingService
	// programmed lists the services written in full, logged once every
	// batch is sent: under emulation a log line cost about a millisecond,
	// and 64 of them held back the next batch's writes.
	programmed []programmed
}

// programmed is a service written in full: its key, how many writes, and
// why the first one was made.
type programmed struct {
	k      ipvs.Key
	ops    int
	reason string
}

// pendingService is one service whose writes are in a batch.
type pendingService struct {
	k    ipvs.Key
	e    *entry
	want *ipvs.Service
	read bool // its kernel state was read in this Apply
	ops  []ipvs.Op
}

// applyWork diffs and writes the services in work (sorted keys); full says
// their kernel state was just read. The writes of up to maxBatch services
// go out together (flush); a cancelled ctx drops the writes not sent yet.
func (h *Handle) applyWork(ctx context.Context, want []ipvs.Service, work []ipvs.Key, full bool, now time.Time, rep *Report) error {
	var b writeBatch
	for _, k := range work {
		if err := ctx.Err(); err != nil {
			h.needFull = true
			return fmt.Errorf("apply IPVS services: %w", err)
		}
		e := h.entries[k]
		var w *ipvs.Service
		if e.seen == h.epoch {
			w = &want[e.wantIdx]
			if err := ipvs.Validate(*w); err != nil {
				rep.Failed[k] = err // keep the kernel's state for this key
				continue
			}
		}
		h.prepare(ctx, pendingService{k: k, e: e, want: w, read: full}, now, rep, &b)
		if len(b.services) >= maxBatch {
			h.flush(ctx, &b, now, rep)
		}
	}
	h.flush(ctx, &b, now, rep)
	h.logProgrammed(b.programmed)
	if len(rep.Failed) > 0 {
		h.needFull = true
	}
	return nil
}

// prepare diffs one owned service at now and adds its writes to b.
//
// Between full reads the record of a trusted service is what this handle
// wrote and read, so a service whose weights changed is written without
// reading it first: a reload changing one weight in every service costs one
// write per service, not a read and a write (a destination list dump per
// service was most of such a pass under emulation). The record is read
// first when it is not trusted (a read or write failed since the last full
// read), when destinations are draining (their connection counts decide
// when they go) and before a service is deleted. A write the kernel refuses
// because it no longer holds what the record says (someone changed IPVS by
// hand) reads the service and diffs once more (flush), so that drift is
// repaired in the same Apply as before; drift in services the desired state
// did not change waits for the next full read (the resync interval), as it
// always did.
func (h *Handle) prepare(ctx context.Context, s pendingService, now time.Time, rep *Report, b *writeBatch) {
	if !s.read && s.e.exists && mustRead(s.e, s.want) {
		if !h.reread(s.k, s.e, rep) {
			h.done(ctx, s, rep)
			return
		}
		s.read = true
	}
	var have *ipvs.Service
	if s.e.exists {
		have = &s.e.have
	}
	s.ops = ipvs.DiffService(s.want, have, now)
	b.services = append(b.services, s)
}

// flush sends b's writes and settles each of its services. The writes go
// in waves: every service's first write, then the second write of those
// whose first succeeded, and so on, so a service's writes run in order and
// stop at its first failure, as if written one by one, in as many requests
// as the longest service has writes. A write refused on a service not read
// in this Apply reads it back and writes again; any other failure is
// reported.
func (h *Handle) flush(ctx context.Context, b *writeBatch, now time.Time, rep *Report) {
	failed := h.sendWaves(b.services, rep)
	for i, s := range b.services {
		err := failed[i]
		if err == nil && len(s.ops) > 0 {
			b.programmed = append(b.programmed, programmed{s.k, len(s.ops), s.ops[0].Reason})
		}
		if err != nil && !s.read && s.e.exists && isDrift(err) {
			h.log.Info("IPVS service differs from this handle's record; reading it back", "vip", s.k.String(), "err", err)
			if !h.reread(s.k, s.e, rep) {
				h.done(ctx, s, rep)
				continue
			}
			err = h.write(s.k, s.e, s.want, now, rep)
		}
		if err != nil {
			rep.Failed[s.k] = err
			s.e.distrust()
		}
		h.refreshFingerprint(s.k, s.e)
		h.done(ctx, s, rep)
	}
	b.services = b.services[:0]
}

// sendWaves issues the services' writes wave by wave (see flush), records
// each one that succeeds, and returns each service's first failure.
func (h *Handle) sendWaves(services []pendingService, rep *Report) []error {
	failed := make([]error, len(services))
	var ops []ipvs.Op
	var who []int
	for wave := 0; ; wave++ {
		ops, who = ops[:0], who[:0]
		for i := range services {
			if failed[i] == nil && wave < len(services[i].ops) {
				ops = append(ops, services[i].ops[wave])
				who = append(who, i)
			}
		}
		if len(ops) == 0 {
			return failed
		}
		rep.Ops += len(ops)
		for j, err := range h.execAll(ops) {
			s := &services[who[j]]
			if err != nil {
				h.log.Warn("IPVS write failed", "vip", s.k.String(), "reason", ops[j].String(), "err", err)
				failed[who[j]] = err
				continue
			}
			h.log.Debug("IPVS write", "vip", s.k.String(), "reason", ops[j].String())
			s.e.record(ops[j])
		}
	}
}

// done ends one service's part of Apply: the watchdog hears of the progress,
// and a service deleted as wanted leaves the record.
func (h *Handle) done(ctx context.Context, s pendingService, rep *Report) {
	progress.Report(ctx) // one service's reads and writes done: the watchdog sees a moving pass
	if s.want == nil && !s.e.exists && rep.Failed[s.k] == nil {
		s.e.gone = true
		delete(h.entries, s.k)
		h.setFingerprint(s.k, "")
	}
}

// execAll issues ops in order, all of them whatever fails (in batches when
// the kernel takes them), and returns each one's error, explained.
func (h *Handle) execAll(ops []ipvs.Op) []error {
	writes := make([]kernelWrite, len(ops))
	for i, op := range ops {
		writes[i] = writeOf(op)
	}
	var errs []error
	if bk, ok := h.k.(batchKernel); ok {
		errs = bk.WriteBatch(writes)
	} else {
		errs = make([]error, len(ops))
		for i, w := range writes {
			errs[i] = w.run(h.k)
		}
	}
	for i, err := range errs {
		if err != nil {
			errs[i] = explain(ops[i], err)
		}
	}
	return errs
}

// exec issues one write.
func (h *Handle) exec(op ipvs.Op) error { return h.execAll([]ipvs.Op{op})[0] }

// writeOf is the kernel write that carries out op. An unknown kind is sent
// as command 0, which the kernel refuses.
func writeOf(op ipvs.Op) kernelWrite {
	switch op.Kind {
	case ipvs.OpCreateService:
		return kernelWrite{cmd: ipvsCmdNewService, s: kernelService(op.Service)}
	case ipvs.OpUpdateService:
		return kernelWrite{cmd: ipvsCmdSetService, s: kernelService(op.Service)}
	case ipvs.OpDeleteService:
		return kernelWrite{cmd: ipvsCmdDelService, s: kernelKey(op.Service.Key)}
	case ipvs.OpAddDestination:
		return kernelWrite{cmd: ipvsCmdNewDest, s: kernelKey(op.Service.Key), d: kernelDest(op.Destination)}
	case ipvs.OpUpdateDestination:
		return kernelWrite{cmd: ipvsCmdSetDest, s: kernelKey(op.Service.Key), d: kernelDest(op.Destination)}
	case ipvs.OpDeleteDestination:
		return kernelWrite{cmd: ipvsCmdDelDest, s: kernelKey(op.Service.Key), d: kernelDest(op.Destination)}
	}
	return kernelWrite{s: kernelKey(op.Service.Key)}
}

// explain says which write failed, with a hint at the likely cause.
func explain(op ipvs.Op, err error) error {
	hint := ""
	switch {
	case (op.Kind == ipvs.OpCreateService || op.Kind == ipvs.OpUpdateService) && errors.Is(err, syscall.ENOENT):
		hint = fmt.Sprintf(" (is the scheduler available? modprobe ip_vs_%s)", op.Service.Scheduler)
	case op.Kind == ipvs.OpAddDestination && errors.Is(err, syscall.EINVAL):
		hint = " (the kernel takes only unicast destination addresses; in a new network namespace bring lo up first)"
	case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ESRCH):
		hint = " (IPVS was changed behind this handle's back; the next Apply reads it again)"
	}
	return fmt.Errorf("%s: %w%s", op, err, hint)
}

// programmedLines is how many services an Apply logs one line each for;
// more are summed up in one line, each at debug level. At 1,000 services a
// line each was 1,000 lines for one real server failing (and as many for
// its return, a reload or a start), about a second of CPU under emulation
// while the director was busiest, and nothing an operator reads line by
// line: the health changes that caused them are logged one by one.
const programmedLines = 16

// logProgrammed logs the services an Apply wrote in full: one line each,
// or, for more than programmedLines, one line with their count, the first
// and last and the commonest reasons.
func (h *Handle) logProgrammed(ps []programmed) {
	if len(ps) <= programmedLines {
		for _, p := range ps {
			h.log.Info("IPVS service programmed", "vip", p.k.String(), "ops", p.ops, "reason", p.reason)
		}
		return
	}
	ops := 0
	byReason := map[string]int{}
	for _, p := range ps {
		ops += p.ops
		byReason[p.reason]++
	}
	h.log.Info("IPVS services programmed", "count", len(ps), "ops", ops, "first", ps[0].k.String(),
		"last", ps[len(ps)-1].k.String(), "reason", commonest(byReason, 3)+"; each is logged at debug level")
	if h.log.Enabled(context.Background(), slog.LevelDebug) {
		for _, p := range ps {
			h.log.Debug("IPVS service programmed", "vip", p.k.String(), "ops", p.ops, "reason", p.reason)
		}
	}
}

// commonest phrases the n commonest reasons of counts, most first:
// "weight 1 -> 0 (998), created (2)", and how many other reasons there were.
func commonest(counts map[string]int, n int) string {
	reasons := make([]string, 0, len(counts))
	for r := range counts {
		reasons = append(reasons, r)
	}
	slices.SortFunc(reasons, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b))
	})
	var parts []string
	for _, r := range reasons[:min(n, len(reasons))] {
		parts = append(parts, fmt.Sprintf("%s (%d)", r, counts[r]))
	}
	if more := len(reasons) - n; more > 0 {
		parts = append(parts, fmt.Sprintf("%d other reasons", more))
	}
	return strings.Join(parts, ", ")
}
