package integration

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestStressRace runs a layerfs built with the race detector under concurrent load: several
// processes copy the same lower file up and append to it at once, others rename files back
// and forth while lookups and walks run, and rm -rf races find. No write may be lost, no errno
// may be one the kernel would not give, and the server must report no data race; in both
// the default mode and -o noopen.
func TestStressRace(t *testing.T) {
	needMounts(t)
	raceBin := filepath.Join(t.TempDir(), "layerfs-race")
	if out, err := exec.Command("go", "build", "-race", "-o", raceBin, "../cmd/layerfs").CombinedOutput(); err != nil {
		t.Fatalf("go build -race: %v\n%s", err, out)
	}
	t.Run("default", func(t *testing.T) { stressRace(t, raceBin) })
	t.Run("noopen", func(t *testing.T) { stressRace(t, raceBin, "-o", "noopen") })
}

func stressRace(t *testing.T, raceBin string, args ...string) {
	dir := t.TempDir()
	st := stack{Lowers: []string{mkdir(t, dir, "lower")}, Upper: mkdir(t, dir, "upper"), Work: mkdir(t, dir, "work")}
	lower := builder{t, st.Lowers[0]}
	lower.file("shared", "base\n", 0o644)
	for i := 0; i < 50; i++ {
		lower.file(fmt.Sprintf("tree/d%d/f%d", i%5, i), "x", 0o644)
		lower.file(fmt.Sprintf("ren/f%d", i), fmt.Sprint(i), 0o644)
	}
	lower.settle()
	mnt := mkdir(t, dir, "mnt")
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	must(t, err)
	defer logf.Close()
	srv := exec.Command(raceBin, append(append([]string{"-f", "-o", st.options()}, args...), mnt)...)
	srv.Stderr = logf
	must(t, srv.Start())
	done := make(chan error, 1)
	go func() { done <- srv.Wait() }()
	t.Cleanup(func() { srv.Process.Kill(); unmountFuse(t, mnt) })
	waitMounted(t, mnt, done)

	var wg sync.WaitGroup
	errs := make(chan string, 100)
	// Writers: four processes append to one lower file, which each open copies up.
	const writers, lines = 4, 100
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < lines; i++ {
				f, err := os.OpenFile(filepath.Join(mnt, "shared"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					errs <- fmt.Sprintf("writer %d open: %v", w, err)
					return
				}
				_, err = fmt.Fprintf(f, "w%d-%d\n", w, i)
				f.Close()
				if err != nil {
					errs <- fmt.Sprintf("writer %d: %v", w, err)
					return
				}
			}
		}(w)
	}
	// Renamers move files between two directories while walkers look them up.
	wg.Add(1)
	go func() {
		defer wg.Done()
		os.Mkdir(filepath.Join(mnt, "ren2"), 0o755)
		for round := 0; round < 3; round++ {
			from, to := "ren", "ren2"
			if round%2 == 1 {
				from, to = to, from
			}
			for i := 0; i < 50; i++ {
				if err := os.Rename(filepath.Join(mnt, from, fmt.Sprintf("f%d", i)), filepath.Join(mnt, to, fmt.Sprintf("f%d", i))); err != nil {
					errs <- fmt.Sprintf("rename: %v", err)
					return
				}
			}
		}
	}()
	stop := make(chan struct{})
	var walkers sync.WaitGroup
	for w := 0; w < 2; w++ {
		walkers.Add(1)
		go func() {
			defer walkers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				// find over a tree being removed: ENOENT is what the kernel gives too.
				out, _ := exec.Command("find", mnt, "-name", "f*").CombinedOutput()
				for _, line := range strings.Split(string(out), "\n") {
					if strings.Contains(line, "find:") && !strings.Contains(line, "No such file") {
						errs <- "find: " + line
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(50 * time.Millisecond) // let the walkers get going first
		if err := os.RemoveAll(filepath.Join(mnt, "tree")); err != nil {
			errs <- fmt.Sprintf("rm -rf: %v", err)
		}
	}()
	wg.Wait()
	close(stop)
	walkers.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}

	data, err := os.ReadFile(filepath.Join(mnt, "shared"))
	must(t, err)
	if !bytes.HasPrefix(data, []byte("base\n")) {
		t.Errorf("shared lost its lower contents: %q", data[:min(len(data), 40)])
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < lines; i++ {
			if !bytes.Contains(data, []byte(fmt.Sprintf("w%d-%d\n", w, i))) {
				t.Fatalf("line w%d-%d lost", w, i)
			}
		}
	}
	if n := bytes.Count(data, []byte("\n")); n != 1+writers*lines {
		t.Errorf("shared has %d lines, want %d", n, 1+writers*lines)
	}
	unmountFuse(t, mnt)
	<-done
	logData, _ := os.ReadFile(logf.Name())
	if bytes.Contains(logData, []byte("DATA RACE")) || bytes.Contains(logData, []byte("panic")) {
		t.Errorf("the server reported:\n%s", logData)
	}
}
