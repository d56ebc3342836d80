package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// Filter selects events to read; zero fields select all.
type Filter struct {
	Unit  string    // events concerning this unit (or recorded by it)
	Since time.Time // at or after
}

func (f Filter) keep(e Event) bool {
	if f.Unit != "" && e.Unit != f.Unit && e.Leader != f.Unit {
		return false
	}
	return f.Since.IsZero() || !e.Time.Before(f.Since)
}

// Read returns the events of path and its rotated files, oldest first. A line that does
// not parse (a torn last line after a crash) is skipped and counted in skipped. Every
// file must be the trail's own (checkTrailFile): written by the owner of the newest,
// and by no one else; a file another user planted is an error naming it.
func Read(path string, filter Filter) (events []Event, skipped int, err error) {
	var files []string
	for i := 1; ; i++ {
		if _, err := os.Lstat(rotated(path, i)); err != nil {
			break
		}
		files = append([]string{rotated(path, i)}, files...)
	}
	files = append(files, path)
	owner := -1
	for i := len(files) - 1; i >= 0 && owner < 0; i-- {
		if info, err := os.Lstat(files[i]); err == nil {
			owner = fileOwner(info)
		}
	}
	for _, name := range files {
		f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
		if errors.Is(err, os.ErrNotExist) && name == path {
			continue
		}
		if err != nil {
			return nil, 0, fmt.Errorf("audit: %w", err)
		}
		info, err := f.Stat()
		if err == nil {
			err = checkTrailFile(name, info, owner)
		}
		if err != nil {
			f.Close()
			return nil, 0, fmt.Errorf("audit: %w", err)
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Event == "" {
				skipped++
				continue
			}
			if filter.keep(e) {
				events = append(events, e)
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("audit: %s: %w", name, err)
		}
	}
	return events, skipped, nil
}
