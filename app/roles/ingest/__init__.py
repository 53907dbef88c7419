"""The ingest role: the scanner API (`/scanner/…`). Decisions recorded here (design.md §2 leaves them open):

- Secrets: API keys are `mipo_<key_id>_<secret>` (16 hex id, 256-bit secret); enrolment tokens are
  `mipoenrol_<256 bits>`. Only SHA-256 digests are stored; keys are compared with `hmac.compare_digest`.
  Every call re-checks the key in the config DB, so a revocation or a disable applies to the next call.
- Single use: enrolment is one `UPDATE enrolment_tokens … WHERE used_at IS NULL … RETURNING`; of N
  concurrent enrolments exactly one gets the row. A refusal is then diagnosed (unknown/revoked/used/
  expired token, address not in the token's bind network) and returned as a problem document.
- Identity: the agent sends SHA-256 of /etc/machine-id and its host name as `host_id` (hosts cloned from
  one image share a machine id and must stay distinct scanners). If a scanner already has that host,
  the key goes to it (its old keys are revoked) and a placeholder row made for the new token is disabled:
  re-installing a host keeps its identity and history. `rotate-key` revokes all keys and issues a token.
- Leases: claim = `FOR UPDATE SKIP LOCKED` + lease bump + attempt row in one statement, woken by
  `LISTEN mipo_jobs` (one connection per process). Batches, progress and completion lock the job row
  (`FOR NO KEY UPDATE`) and check scanner, status and token; the lock is held until the results
  transaction committed, so a requeue can never slip between the check and the write.
- Batches: ledger row + COPY in one results transaction, ack after commit; a resend is acknowledged as
  a duplicate and stores nothing. Batch numbers continue across attempts (`first_batch_seq` in the
  claim answer) so `(job_id, batch_seq)` stays unique when a job is re-leased. Completion is refused
  (`batches_missing`) unless every announced batch of the current lease is in the ledger; only a
  completed job records complete coverage.
- Results outside the job's targets x ports make a batch malformed (422): a scanner cannot write
  observations for space it was not asked to scan.
- Heartbeats are buffered per process and written for all scanners in one UPDATE every 2 s.
- Scope: the authorised networks go out with every heartbeat and claim answer; the agent refuses a job
  with any target outside them before opening a socket, and ingest records a critical
  `job_out_of_scope` event. Ingest does not filter jobs itself, so such a dispatch error is visible.
- Install: `install.sh` embeds the public URL, the appliance CA and the agent's SHA-256; the manager's
  command fetches it with `curl --cacert <CA>` and passes `--ca-sha256`, which the script checks
  against the embedded CA before using it for everything else (see the script's header).
"""
