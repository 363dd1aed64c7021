// Package pipeline is hubsync's one data flow (DESIGN.md, "The one pipeline"): a trainer checkpoint is pinned,
// turned into what gets published (the LoRA adapter merged into its base model, or the adapter itself with a
// card), uploaded and committed to the Hub as one commit, tagged, and old per-step refs pruned.
//
// [PublishCheckpoint] runs it once (`hubsync push --merged` / `--adapter-only`). A [Daemon] runs it for every
// complete checkpoint a [watcher.Watcher] finds (`hubsync watch`), with a durable job journal
// ([journal.Journal]) so that every stage survives a crash or a restart. A job goes detected → pinned → merged →
// uploading → committed, or ends failed or skipped with a reason:
//
//   - detected: the watcher found checkpoint-N complete; the job is recorded.
//   - pinned: the checkpoint's files are hard-linked (copied across filesystems) into the job's staging
//     directory, so the trainer's save_total_limit rotation cannot pull them away mid-job. A job found in
//     stage detected after a restart is pinned again (an interrupted pin is replaced).
//   - merged: the outputs (merged model shards, index, config, tokenizer, card; and/or the adapter set) are
//     written into the staging directory and their sizes, SHA-256 and samples, computed while writing, are
//     recorded in the journal (journal.Output.Path is relative to the job's staging directory: merged/… or
//     adapter/…). A job found in stage pinned after a restart merges again into a fresh directory; one found
//     in stage merged uploads without merging again.
//   - uploading: the objects go up through the Hub client, whose part journal (a bucket of the same bbolt
//     file) lets a restarted process send only the parts that are missing.
//   - committed: the commit (and tags) exist; the staging directory is removed.
//
// Exactly once: every commit carries a trailer id derived from the job (see commitID). Before committing any job
// the journal does not show as committed, the daemon searches the target branch's recent commits for that id, so
// neither a daemon killed between "commit sent" and "journal says committed" nor one whose journal was lost (a
// new state directory, a deleted or emptied journal.db) commits again: the commit found is recorded, its tag
// checked (or created), and nothing is uploaded.
//
// Merges run one at a time on a merge worker; a second worker uploads, so the upload of one checkpoint
// overlaps the merge of the next, and commits stay in step order. With the latest policy, checkpoints still
// queued for merging when a newer one of the same directory is queued are skipped (recorded, logged, counted).
package pipeline
