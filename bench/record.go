package bench

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
)

// resultsHeader starts a results file that does not exist yet; the project's
// docs/benchmarks.md carries a fuller one.
const resultsHeader = `# Benchmarks

Each section below was appended by ` + "`make bench`" + ` (bench/): the date, the machine, the
table of medians, the ratios, and the exact commands.

## Results
`

// AppendResults appends the report's section to the markdown file at path,
// creating it with a header first when it does not exist. The section is rendered
// whole before the file is touched, so a failure leaves the file as it was.
func AppendResults(path string, rep *Report) error {
	var section bytes.Buffer
	if err := rep.WriteMarkdown(&section); err != nil {
		return err
	}
	if _, err := os.Stat(path); os.IsNotExist(err) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte(resultsHeader), 0o644); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(section.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	return f.Close()
}

// SaveChart writes the chart PNG to path (through a temporary file, so a failed
// render keeps the previous chart).
func SaveChart(path string, rep *Report) error {
	var png bytes.Buffer
	if err := WriteChart(rep, &png); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, png.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
