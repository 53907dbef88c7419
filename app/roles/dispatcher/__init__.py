"""The dispatcher role: single-instance orchestration (schedules, planning, reconciling, finalising runs).

Decisions an operator or maintainer should know:
- Single instance: `pg_try_advisory_lock` on a dedicated jobs-DB session (TCP keepalives both ends);
  a standby retries every `dispatcher.standby_poll_seconds`. Killing the leader frees the lock at once;
  a vanished host frees it when keepalives give up (~15-20 s). The leader re-checks it holds the lock
  before every pass and steps down when its session is gone.
- Schedules: `schedules.next_run_at` is the next *due time* (the cron instant); the run starts at due +
  a fixed per-schedule jitter offset in [0, jitter_seconds]. The run (UNIQUE schedule_id, due_at) commits
  before next_run_at advances, so a crash in between re-plans the same due time as a no-op. A due time
  more than `dispatcher.missed_run_after_seconds` late is not run; it becomes one `missed_run` event.
  DST: a wall time that does not exist fires when the clock jumps past it; a repeated one fires once
  (each real hour for hourly schedules).
- Planning: targets minus global and per-template exclusions, clipped to the authorised scope, as
  interval sets; jobs carry compact [first, last] ranges. Batch = effective rate (min of scanner and
  template) x `dispatcher.job_target_seconds` / ports. Mirror: the same batches for every active member
  (sized for the slowest). Split: each batch once, to the least-loaded online active member by rate.
  A run that cannot be planned is still recorded (failed) with a `plan_failed` event.
- Reconciler: each stall is recorded on the job (`stall_class`) or in `scanner_stalls`, so each stall
  and each recovery is exactly one event. Requeues bump the lease token at once (late batches refused).
- Repairs: the manager only reads the jobs DB, so repairs are `repair_requests` rows (config DB) that
  the dispatcher carries out on its next pass, recording the outcome and a `repair` event.
"""
