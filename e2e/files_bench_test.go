package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkFilesDownload: a 1 GiB file of a version 1 distro downloaded
// with GET …/files/{path} by a plain HTTP client (as curl would, read to
// io.Discard) vs `subsys run NAME -- cat FILE` (the exec stream, through
// the CLI, its stdout read to io.Discard), taking turns, three rounds each
// after a warm-up of both; medians compared (goal files/exec >= 1).
func BenchmarkFilesDownload(b *testing.B) {
	s := startServerLevel(b, "", "info")
	s.importTar("tiny", tinyRootfs(b))
	benchDownload(b, s, "tiny", 1024, 3)
}

// BenchmarkFilesDownloadV2: the same for a version 2 distro, with 256 MiB:
// under TCG the VM's every byte costs far more than on KVM.
func BenchmarkFilesDownloadV2(b *testing.B) {
	s := startV2ServerEnv(b, kernelDir(b))
	s.importV2("tiny2", tinyRootfs(b))
	benchDownload(b, s, "tiny2", 256, 3)
}

// benchDownload makes an mib MiB file in distro name and compares the two
// ways of reading it.
func benchDownload(b *testing.B, s *server, name string, mib, rounds int) {
	if r := s.sh(name, fmt.Sprintf("dd if=/dev/urandom of=/big bs=1M count=%d 2>/dev/null && wc -c < /big", mib)); r.ExitCode != 0 {
		b.Fatalf("make /big: %+v", r)
	}
	size := int64(mib) << 20
	files := func() time.Duration {
		req, _ := http.NewRequest("GET", s.url+"/api/v1/distros/"+name+"/files/big", nil)
		req.Header.Set("Authorization", "Bearer "+s.token)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if err != nil || n != size || resp.StatusCode != 200 {
			b.Fatalf("GET /big: %d, %d bytes, %v", resp.StatusCode, n, err)
		}
		return d
	}
	execCat := func() time.Duration {
		cmd := exec.Command(subsysBin, "--data", s.data, "run", "-d", name, "--", "cat", "/big")
		out, err := cmd.StdoutPipe()
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, out)
		err = cmd.Wait()
		d := time.Since(start)
		if err != nil || n != size {
			b.Fatalf("subsys run cat /big: %d bytes, %v", n, err)
		}
		return d
	}
	files()
	execCat()
	load0 := loadAverage()
	var ft, et []time.Duration
	for range rounds {
		ft = append(ft, files())
		et = append(et, execCat())
	}
	load1 := loadAverage()
	fm, em := median(ft), median(et)
	fRate := float64(size) / fm.Seconds() / 1e6
	eRate := float64(size) / em.Seconds() / 1e6
	b.ReportMetric(fRate, "files_MB/s")
	b.ReportMetric(eRate, "exec_MB/s")
	b.ReportMetric(fRate/eRate, "ratio_files/exec")
	fmt.Printf("download %d MiB from %s (median of %d, load %s → %s): GET files %.0f MB/s, subsys run cat %.0f MB/s, ratio files/exec %.2f (goal >= 1)\n",
		mib, name, rounds, load0, load1, fRate, eRate, fRate/eRate)
}
