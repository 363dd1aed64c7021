//go:build unix

package journal

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/bbolt"
)

// crashStages is the cycle of transitions the helper process writes: transition i sets Attempts = i and the
// stage crashStages[i%len]; a consistent record therefore always has Stage == crashStages[Attempts%len].
var crashStages = []Stage{Detected, Pinned, Merged, Uploading, Uploading}

const crashJobs = 3

// TestCrashDurability SIGKILLs a process in the middle of writing stage transitions and checks that the reopened
// journal holds, for every job, a consistent record at or after the last transition the process reported as
// committed.
func TestCrashDurability(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelperProcess$")
			cmd.Env = append(os.Environ(), "HUBSYNC_JOURNAL_CRASH_DB="+path)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			// Reported transitions, "job i": the latest i per job.
			last := map[int]int{}
			sc := bufio.NewScanner(out)
			target := 40 + 37*round // kill at a different point each round
			n := 0
			for sc.Scan() {
				f := strings.Fields(sc.Text())
				if len(f) != 2 {
					t.Fatalf("helper said %q", sc.Text())
				}
				job, _ := strconv.Atoi(f[0])
				i, _ := strconv.Atoi(f[1])
				last[job] = i
				if n++; n == target {
					break
				}
			}
			if n < target {
				t.Fatalf("helper stopped after %d transitions: %v", n, sc.Err())
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Everything the helper printed before it died: each line follows a committed transition.
			for sc.Scan() {
				var job, i int
				if _, err := fmt.Sscanf(sc.Text(), "%d %d", &job, &i); err == nil {
					last[job] = i
					n++
				}
			}
			cmd.Wait()

			j, err := Open(path)
			if err != nil {
				t.Fatalf("reopen after SIGKILL: %v", err)
			}
			defer j.Close()
			if err := j.DB().View(func(tx *bbolt.Tx) error {
				for err := range tx.Check() {
					return err
				}
				return nil
			}); err != nil {
				t.Fatalf("database check: %v", err)
			}
			jobs, err := j.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(jobs) != crashJobs {
				t.Fatalf("%d jobs after crash, want %d", len(jobs), crashJobs)
			}
			for k, job := range jobs {
				want := last[k]
				// The helper may have committed one more transition after its last report.
				if job.Attempts < want || job.Attempts > want+1 {
					t.Errorf("job %d: attempts %d, last reported %d", k, job.Attempts, want)
				}
				if job.Stage != crashStages[job.Attempts%len(crashStages)] ||
					job.LastError != fmt.Sprintf("attempt %d", job.Attempts) || job.Progress.BytesDone != int64(job.Attempts)*1000 {
					t.Errorf("job %d: inconsistent record %+v", k, job)
				}
			}
			t.Logf("killed after %d reported transitions; jobs at %v", n, last)
		})
	}
}

// TestCrashHelperProcess is the process TestCrashDurability kills: it cycles through transitions forever,
// printing each one after Update returned.
func TestCrashHelperProcess(t *testing.T) {
	path := os.Getenv("HUBSYNC_JOURNAL_CRASH_DB")
	if path == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	j, err := Open(path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	for k := range crashJobs {
		job := &Job{WatchDir: "/out", Step: int64(k), Stage: crashStages[0], LastError: "attempt 0"}
		if err := j.Put(ctx, job); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	for i := 1; ; i++ {
		k := i % crashJobs
		_, err := j.Update(ctx, JobID("/out", int64(k)), func(job *Job) error {
			job.Attempts++
			job.SetStage(crashStages[job.Attempts%len(crashStages)], time.Now())
			job.LastError = fmt.Sprintf("attempt %d", job.Attempts)
			job.Progress.BytesDone = int64(job.Attempts) * 1000
			job.Outputs = append(job.Outputs, Output{Path: fmt.Sprintf("f%d", job.Attempts), Size: int64(i)})
			return nil
		})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		got, _ := j.Get(ctx, JobID("/out", int64(k)))
		fmt.Fprintf(w, "%d %d\n", k, got.Attempts)
		w.Flush()
	}
}
