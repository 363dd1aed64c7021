package pipeline

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/hubsync/hubsync/export"
	"github.com/hubsync/hubsync/hub"
	"github.com/hubsync/hubsync/internal/config"
	"github.com/hubsync/hubsync/watcher"
)

// recoverDepth is how many recent commits of the target branch are searched for a job's commit id.
const recoverDepth = 100

// Published is what publishing one checkpoint did.
type Published struct {
	// Commits are the commits made (or found), one per output kind, in Target order (merged first).
	Commits []PublishedCommit
	// Staging is the staging directory used (removed when PublishCheckpoint returns).
	Staging string
}

// PublishedCommit is one commit of a Published checkpoint.
type PublishedCommit struct {
	Kind, Repo, Branch string
	OID, URL           string
	// PullRequestURL is set when the commit opened a pull request.
	PullRequestURL string
	// Tag is the tag created on the commit ("" = none).
	Tag string
	// Files are the files committed (paths in the repo) and Deleted the stale files removed.
	Files, Deleted []string
	// Ignored are files the repo's .gitignore excluded.
	Ignored []string
	// Uploaded counts LFS objects sent; NoOp reports that the Hub already had everything (no new commit).
	Uploaded int
	NoOp     bool
	// Recovered: the commit had already landed (found by its id) and was not sent again.
	Recovered bool
}

// PublishOptions configure PublishCheckpoint.
type PublishOptions struct {
	// Staging is the directory the outputs are written into ("" = <checkpoint's parent>/.hubsync-staging/
	// push-<name>-<random>). It is removed when PublishCheckpoint returns.
	Staging string
	// Progress receives the Hub client's upload events.
	Progress func(hub.ProgressEvent)
	// MergeProgress receives merge progress (bytes written, total).
	MergeProgress func(done, total int64)
}

// PublishCheckpoint runs the whole pipeline once for the checkpoint (or adapter) directory dir: resolve the base,
// merge and shard (and/or build the adapter set), upload, one commit per output kind, the tag, pruning. Nothing is
// journaled beyond the Hub client's part journal, so an interrupted run re-merges (the same bytes) and resends
// only the parts the client's journal lacks.
func PublishCheckpoint(ctx context.Context, env *Env, t Target, dir string, o PublishOptions) (*Published, error) {
	if env == nil || env.Client == nil {
		return nil, errors.New("pipeline: no Hub client")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, permanent(fmt.Errorf("checkpoint %s: %w", dir, err))
	}
	if !st.IsDir() {
		return nil, permanent(fmt.Errorf("%s is not a directory", dir))
	}
	if !IsAdapterDir(abs) {
		return nil, permanent(fmt.Errorf("%s: no %s: not a PEFT adapter or trainer checkpoint", dir, adapterConfigFile))
	}
	name := filepath.Base(abs)
	step, _ := watcher.ParseStep(name)
	staging := o.Staging
	if staging == "" {
		root := filepath.Join(filepath.Dir(abs), config.StagingDirName)
		if err := os.MkdirAll(root, 0o755); err != nil {
			return nil, fmt.Errorf("staging: %w", err)
		}
		staging, err = os.MkdirTemp(root, "push-"+name+"-")
		if err != nil {
			return nil, fmt.Errorf("staging: %w", err)
		}
	} else if err := os.MkdirAll(staging, 0o755); err != nil {
		return nil, fmt.Errorf("staging: %w", err)
	}
	defer os.RemoveAll(staging)
	log := env.Log.With().Str("checkpoint", abs).Logger()
	sets, err := prepare(ctx, env, prepareOptions{Src: abs, Name: name, Step: step, Staging: staging, Target: &t,
		Progress: o.MergeProgress, Log: log})
	if err != nil {
		return nil, err
	}
	defer closeSets(sets)
	res := &Published{Staging: staging}
	dests := t.dests(step, name)
	for i, d := range dests {
		pc, err := publishSet(ctx, env, &t, d, sets[i], publishSetOptions{Progress: o.Progress, Log: log})
		if err != nil {
			return res, err
		}
		res.Commits = append(res.Commits, *pc)
	}
	for _, d := range dests {
		prune(ctx, env, &t, d, log)
	}
	return res, nil
}

// publishSetOptions tune one commit.
type publishSetOptions struct {
	// CommitID is the trailer id ("" = random).
	CommitID string
	// Recover searches the branch for CommitID before committing (the job was uploading in an earlier attempt).
	Recover bool
	// Progress receives the client's events.
	Progress func(hub.ProgressEvent)
	// Landed is called once the commit exists, before the tag (the daemon's "commit landed" hook point).
	Landed func(oid string)
	Log    zerolog.Logger
}

// publishSet commits one output set to its destination: creates the repo and branch when missing, deletes stale
// model files of an earlier step at the destination, uploads and commits (or finds the commit by its id), and
// tags it.
func publishSet(ctx context.Context, env *Env, t *Target, d dest, set outputSet, o publishSetOptions) (*PublishedCommit, error) {
	files := make([]hub.UploadFile, 0, len(set.Files))
	for _, f := range set.Files {
		uf := hub.UploadFile{
			PathInRepo: d.repoPath(f.Path), LocalPath: filepath.Join(set.Dir, filepath.FromSlash(f.Path)),
			SHA256: hex.EncodeToString(f.SHA256[:]), Size: f.Size, Sample: f.Sample,
		}
		if p := set.src.shard(f.Path); p != nil {
			uf.LocalPath, uf.Content = "", set.src.content(p)
		}
		files = append(files, uf)
	}
	o.Log = o.Log.With().Str("kind", d.Kind).Logger()
	var stale func(context.Context) ([]string, error)
	if !t.KeepStale && !t.CreatePR {
		stale = func(ctx context.Context) ([]string, error) { return staleFiles(ctx, env.Client, d, set) }
	}
	pc, err := publishFiles(ctx, env.Client, FilesCommit{
		Repo: d.Repo, Branch: d.Branch, Start: t.revision(), Private: t.Private, Summary: d.Summary,
		Description: d.Description, CreatePR: t.CreatePR, Tag: d.Tag, Files: files,
	}, stale, o)
	if pc != nil {
		pc.Kind = d.Kind
	}
	return pc, err
}

// FilesCommit is one commit of files made by PublishFiles.
type FilesCommit struct {
	// Repo is the model repo (created when missing, Private) and Branch the branch committed to (created from
	// Start, default main, when missing).
	Repo, Branch, Start string
	Private             bool
	// Summary and Description are the commit title and body.
	Summary, Description string
	// CreatePR opens a pull request instead of committing to the branch (no tag is made then).
	CreatePR bool
	// Tag is put on the commit ("" = none); a tag already on the same commit is fine.
	Tag string
	// Files are the files to commit.
	Files []hub.UploadFile
}

// PublishFilesOptions tune PublishFiles.
type PublishFilesOptions struct {
	// Progress receives the client's events.
	Progress func(hub.ProgressEvent)
	// Log receives what was done (zero value: disabled).
	Log zerolog.Logger
	// Delete, when set, lists the files of the branch to delete in the same commit (`upload --delete`); it is
	// called once the repo and branch exist.
	Delete func(context.Context) ([]string, error)
}

// PublishFiles is the publishing path of a plain folder upload (`hubsync push DIR`): the same repo and branch
// creation, commit and tag handling as the daemon's checkpoints. Committing content the branch already has is a
// no-op (no new commit), and its tag, when the tag already points at that commit, is left as it is.
func PublishFiles(ctx context.Context, env *Env, fc FilesCommit, o PublishFilesOptions) (*PublishedCommit, error) {
	if env == nil || env.Client == nil {
		return nil, errors.New("pipeline: no Hub client")
	}
	return publishFiles(ctx, env.Client, fc, o.Delete, publishSetOptions{Progress: o.Progress, Log: o.Log})
}

// publishFiles is the one publisher: repo, branch, find-by-id or commit (deleting what stale lists), tag.
func publishFiles(ctx context.Context, c *hub.Client, fc FilesCommit, stale func(context.Context) ([]string, error),
	o publishSetOptions) (*PublishedCommit, error) {
	if fc.Branch == "" {
		fc.Branch = config.DefaultRevision
	}
	if fc.Start == "" {
		fc.Start = config.DefaultRevision
	}
	log := o.Log.With().Str("repo", fc.Repo).Str("branch", fc.Branch).Logger()
	pc := &PublishedCommit{Repo: fc.Repo, Branch: fc.Branch, Tag: fc.Tag}
	for _, f := range fc.Files {
		pc.Files = append(pc.Files, f.PathInRepo)
	}
	if _, created, err := c.CreateRepo(ctx, fc.Repo, hub.CreateRepoOptions{Private: fc.Private, ExistOK: true}); err != nil {
		return nil, err
	} else if created {
		log.Info().Bool("private", fc.Private).Msg("created the repo")
	}
	if err := ensureBranch(ctx, c, fc.Repo, fc.Branch, fc.Start); err != nil {
		return nil, err
	}
	var found *hub.CommitInfo
	if o.Recover && o.CommitID != "" {
		var err error
		if found, err = findCommit(ctx, c, fc.Repo, fc.Branch, o.CommitID); err != nil {
			return nil, fmt.Errorf("looking for an earlier commit of this job on %s@%s: %w", fc.Repo, fc.Branch, err)
		}
		if found == nil && fc.Tag != "" && !fc.CreatePR {
			// The branch may have moved on by more than the search depth: the job's tag, when it exists,
			// points at the job's commit.
			if found, err = taggedCommit(ctx, c, fc.Repo, fc.Tag, o.CommitID); err != nil {
				return nil, fmt.Errorf("looking for an earlier commit of this job at tag %s of %s: %w", fc.Tag, fc.Repo, err)
			}
		}
	}
	if found != nil {
		log.Info().Str("commit", found.ID).Str("commit_id", o.CommitID).
			Msg("this job's commit had already landed (found by its id); not committing again")
		pc.OID, pc.URL, pc.Recovered = found.ID, c.Endpoint()+"/"+fc.Repo+"/commit/"+found.ID, true
	} else {
		var del []string
		if stale != nil {
			var err error
			if del, err = stale(ctx); err != nil {
				return nil, err
			}
		}
		res, err := c.Commit(ctx, fc.Repo, fc.Files, hub.CommitOptions{
			Revision: fc.Branch, Summary: fc.Summary, Description: fc.Description, CreatePR: fc.CreatePR,
			DeleteFiles: del, CommitID: o.CommitID, Progress: o.Progress,
		})
		if err != nil {
			return nil, err
		}
		pc.OID, pc.URL, pc.PullRequestURL = res.CommitOID, res.CommitURL, res.PullRequestURL
		pc.Uploaded, pc.NoOp, pc.Recovered, pc.Deleted, pc.Ignored = res.Uploaded, res.NoOp, res.Recovered, del, res.Ignored
		if pc.URL == "" && pc.OID != "" {
			pc.URL = c.Endpoint() + "/" + fc.Repo + "/commit/" + pc.OID
		}
		ev := log.Info().Str("commit", pc.OID).Int("files", len(fc.Files)).Int("uploaded", res.Uploaded).
			Int("unchanged", res.Unchanged).Strs("deleted", del)
		switch {
		case res.NoOp:
			ev.Msg("nothing to commit: the Hub already has these files")
		case res.Recovered:
			ev.Msg("committed (the answer was lost; found the commit on the branch)")
		default:
			ev.Msg("committed")
		}
	}
	if o.Landed != nil {
		o.Landed(pc.OID)
	}
	if fc.Tag != "" && fc.CreatePR {
		log.Warn().Str("tag", fc.Tag).Msg("not tagging: the commit opened a pull request; tag it once merged")
	}
	if fc.Tag != "" && !fc.CreatePR {
		if pc.OID == "" {
			return nil, permanent(fmt.Errorf("tag %s: %s has no commit to tag", fc.Tag, fc.Repo))
		}
		if err := ensureTag(ctx, c, fc.Repo, fc.Tag, pc.OID, fc.Summary); err != nil {
			return nil, err
		}
		log.Info().Str("tag", fc.Tag).Str("commit", pc.OID).Msg("tagged")
	}
	return pc, nil
}

// ensureBranch creates branch (from start) when it does not exist; main always exists in a created repo.
func ensureBranch(ctx context.Context, c *hub.Client, repo, branch, start string) error {
	if branch == config.DefaultRevision || strings.HasPrefix(branch, "refs/") {
		return nil
	}
	refs, err := c.ListRefs(ctx, repo)
	if err != nil {
		return fmt.Errorf("list refs of %s: %w", repo, err)
	}
	if refs.HasBranch(branch) {
		return nil
	}
	if start != branch && start != config.DefaultRevision && !refs.HasBranch(start) {
		if err := c.CreateBranch(ctx, repo, start, hub.BranchOptions{ExistOK: true}); err != nil {
			return fmt.Errorf("create branch %s of %s: %w", start, repo, err)
		}
	}
	sp := start
	if sp == branch {
		sp = ""
	}
	if err := c.CreateBranch(ctx, repo, branch, hub.BranchOptions{StartingPoint: sp, ExistOK: true}); err != nil {
		return fmt.Errorf("create branch %s of %s: %w", branch, repo, err)
	}
	return nil
}

// ensureTag tags oid; an existing tag on the same commit is fine (a retry), on another commit an error.
func ensureTag(ctx context.Context, c *hub.Client, repo, tag, oid, message string) error {
	err := c.CreateTag(ctx, repo, oid, tag, message)
	if err == nil || !errors.Is(err, hub.ErrConflict) {
		if err != nil {
			return fmt.Errorf("tag %s on %s: %w", tag, repo, err)
		}
		return nil
	}
	refs, lerr := c.ListRefs(ctx, repo)
	if lerr != nil {
		return fmt.Errorf("tag %s on %s: %w (and listing refs failed: %v)", tag, repo, err, lerr)
	}
	for _, r := range refs.Tags {
		if r.Name == tag {
			if r.TargetCommit == oid {
				return nil
			}
			return permanent(fmt.Errorf("tag %s already exists on %s and points at %s, not at this checkpoint's commit %s: "+
				"delete the tag or change tag_format", tag, repo, r.TargetCommit, oid))
		}
	}
	return fmt.Errorf("tag %s on %s: %w", tag, repo, err)
}

// findCommit searches the newest recoverDepth commits of branch for the trailer id (hub.Client.FindCommit); nil
// when absent or when the branch does not exist.
func findCommit(ctx context.Context, c *hub.Client, repo, branch, id string) (*hub.CommitInfo, error) {
	ci, err := c.FindCommit(ctx, repo, branch, id, "", recoverDepth)
	if errors.Is(err, hub.ErrRevisionNotFound) {
		return nil, nil
	}
	return ci, err
}

// taggedCommit returns the commit tag points at when that commit carries the trailer id; nil when the tag does
// not exist or points at another commit.
func taggedCommit(ctx context.Context, c *hub.Client, repo, tag, id string) (*hub.CommitInfo, error) {
	refs, err := c.ListRefs(ctx, repo)
	if err != nil {
		return nil, err
	}
	if !refs.HasTag(tag) {
		return nil, nil
	}
	ci, err := c.FindCommit(ctx, repo, tag, id, "", 1)
	if errors.Is(err, hub.ErrRevisionNotFound) {
		return nil, nil
	}
	return ci, err
}

// staleFiles lists the model files at the destination (directly in its folder) that the new set lacks: the
// previous step's shards when the shard count changed, an index the new single-file model does not need, an
// adapter where a merged model now goes. Other files are left alone.
func staleFiles(ctx context.Context, c *hub.Client, d dest, set outputSet) ([]string, error) {
	entries, err := c.ListTree(ctx, d.Repo, d.Branch, d.Prefix, false)
	if err != nil {
		if errors.Is(err, hub.ErrNotFound) {
			return nil, nil
		}
		return nil, fmt.Errorf("listing %s@%s/%s: %w", d.Repo, d.Branch, d.Prefix, err)
	}
	keep := map[string]bool{}
	for _, f := range set.Files {
		keep[d.repoPath(f.Path)] = true
	}
	var out []string
	for _, e := range entries {
		if e.Type != "file" || keep[e.Path] || !isModelFile(path.Base(e.Path)) {
			continue
		}
		out = append(out, e.Path)
	}
	sort.Strings(out)
	return out, nil
}

// isModelFile reports whether a file name is one the pipeline publishes (or an earlier layout did), and so may
// be removed when the new step lacks it.
func isModelFile(name string) bool {
	switch {
	case strings.HasSuffix(name, ".safetensors"), strings.HasSuffix(name, ".safetensors.index.json"), strings.HasSuffix(name, ".gguf"),
		strings.HasPrefix(name, "pytorch_model") && (strings.HasSuffix(name, ".bin") || strings.HasSuffix(name, ".bin.index.json")),
		name == "adapter_model.bin", name == adapterConfigFile, name == "config.json", name == "generation_config.json":
		return true
	}
	for _, n := range export.TokenizerFileNames() {
		if n == name {
			return true
		}
	}
	return false
}

// prune keeps the target's PruneKeep newest per-step tags, branches or folders (names matching the format) at
// the destination, deleting older ones. Failures are logged: the job's commit already stands, and the next
// job prunes again.
func prune(ctx context.Context, env *Env, t *Target, d dest, log zerolog.Logger) {
	if t.PruneKeep <= 0 || t.CreatePR {
		return
	}
	if err := pruneDest(ctx, env.Client, t, d, log); err != nil && ctx.Err() == nil {
		log.Warn().Err(err).Str("repo", d.Repo).Msg("pruning old checkpoints failed; will try again after the next one")
	}
}

func pruneDest(ctx context.Context, c *hub.Client, t *Target, d dest, log zerolog.Logger) error {
	type named struct {
		name string
		step int64
	}
	keepNewest := func(all []named) []named {
		sort.Slice(all, func(i, j int) bool { return all[i].step > all[j].step })
		if len(all) <= t.PruneKeep {
			return nil
		}
		return all[t.PruneKeep:]
	}
	switch t.layout() {
	case config.LayoutTags, config.LayoutBranches:
		format := t.TagFormat
		if t.layout() == config.LayoutBranches {
			format = t.BranchFormat
		}
		if format == "" || t.Tag != "" {
			return nil
		}
		re, err := formatPattern(format)
		if err != nil {
			return err
		}
		refs, err := c.ListRefs(ctx, d.Repo)
		if err != nil {
			return err
		}
		list := refs.Tags
		if t.layout() == config.LayoutBranches {
			list = refs.Branches
		}
		var all []named
		for _, r := range list {
			if r.Name == t.revision() {
				continue
			}
			if s, ok := stepOf(re, r.Name); ok {
				all = append(all, named{r.Name, s})
			}
		}
		for _, old := range keepNewest(all) {
			if t.layout() == config.LayoutBranches {
				err = c.DeleteBranch(ctx, d.Repo, old.name)
			} else {
				err = c.DeleteTag(ctx, d.Repo, old.name)
			}
			if err != nil && !errors.Is(err, hub.ErrNotFound) {
				return fmt.Errorf("delete %s: %w", old.name, err)
			}
			log.Info().Str("repo", d.Repo).Str("ref", old.name).Int64("step", old.step).Msg("pruned an old checkpoint")
		}
	case config.LayoutSubfolders:
		full := path.Join(strings.Trim(t.PathInRepo, "/"), t.SubfolderFormat)
		parent, base := path.Dir(full), path.Base(full)
		if parent == "." {
			parent = ""
		}
		if strings.Contains(parent, "{") {
			return fmt.Errorf("cannot prune: subfolder_format %q has a placeholder in a parent folder", t.SubfolderFormat)
		}
		re, err := formatPattern(base)
		if err != nil {
			return err
		}
		entries, err := c.ListTree(ctx, d.Repo, d.Branch, parent, false)
		if err != nil {
			return err
		}
		var all []named
		for _, e := range entries {
			if e.Type != "directory" {
				continue
			}
			if s, ok := stepOf(re, path.Base(e.Path)); ok {
				all = append(all, named{e.Path, s})
			}
		}
		old := keepNewest(all)
		if len(old) == 0 {
			return nil
		}
		var folders []string
		for _, o := range old {
			folders = append(folders, o.name)
		}
		_, err = c.Commit(ctx, d.Repo, nil, hub.CommitOptions{
			Revision: d.Branch, DeleteFolders: folders,
			Summary: fmt.Sprintf("Prune old checkpoints (keep the %d newest)", t.PruneKeep),
		})
		if err != nil {
			return err
		}
		log.Info().Str("repo", d.Repo).Strs("folders", folders).Msg("pruned old checkpoints")
	}
	return nil
}

// since returns the seconds elapsed since start, for histograms.
func since(now func() time.Time, start time.Time) float64 { return now().Sub(start).Seconds() }
