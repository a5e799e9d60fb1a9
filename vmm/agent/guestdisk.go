package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode"
)

// A new version 2 distro's disk can be made inside the utility VM, where
// the host cannot make one itself (a host with no mkfs.ext4 and no way to
// extract a tree with its owners: Windows), or where the host is asked to
// (SUBSYS_GUEST_UNPACK=1): the host creates an empty image file and
// attaches it, format-disk makes an empty ext4 on it with the options
// vmm/disk uses on the host, and unpack-tree mounts it, extracts the tar
// stream the host sends through vmm/archive's confined extractor, and
// unmounts it. The host then detaches the disk.
//
// unpack-tree's wire: the request header; the agent's header once the disk
// is mounted; then the host sends data frames with the tarball's bytes and
// a data-end frame (with an error when the host's source failed, which
// stops the extraction); the agent answers with one data-end frame that
// carries the error, or the UnpackResult. The agent may answer early, with
// an error, while the host is still sending.

// UnpackResult is what unpack-tree extracted.
type UnpackResult struct {
	// Files counts the archive's entries: files, directories, links and
	// device nodes (archive.Stats.Entries).
	Files int64 `json:"files"`
	// Bytes is the data they hold, as allocated on the disk.
	Bytes int64 `json:"bytes"`
	// SkippedDevices counts device nodes not made (outside /dev).
	SkippedDevices int `json:"skipped_devices,omitempty"`
	// Warnings are what the extraction accepted but a person should hear
	// of, one line each; untrusted text from the archive's names.
	Warnings []string `json:"warnings,omitempty"`
}

// maxUnpackWarnings bounds the warnings a client keeps from an agent.
const maxUnpackWarnings = 100

// FormatDisk has the VM's agent make an empty ext4 file system, as
// vmm/disk makes a distro's disk on the host, on the whole disk the host
// hot-plugged at SCSI target target. The agent refuses (ErrBadRequest) a
// disk that a running distro has, that is mounted or held, or that
// already holds an ext2/3/4 file system: only a new, blank disk is
// formatted.
func (c *Client) FormatDisk(ctx context.Context, target int) error {
	st, _, _, err := c.roundTrip(ctx, request{Op: opFormatDisk, DiskTarget: target})
	if err != nil {
		return err
	}
	st.Close()
	return nil
}

// UnpackTree has the VM's agent mount the disk at SCSI target target
// (formatted by FormatDisk, no distro's and not mounted), extract the
// tarball read from r into it (plain or compressed, as vmm/archive's
// Extract reads it: confined to the disk, device nodes only in /dev), sync
// and unmount it. An error reading r stops the extraction and is returned
// as it is; the disk then holds part of the tree, for the caller to
// discard. Cancelling ctx stops it too.
func (c *Client) UnpackTree(ctx context.Context, target int, r io.Reader) (UnpackResult, error) {
	st, br, _, err := c.roundTrip(ctx, request{Op: opUnpackTree, DiskTarget: target})
	if err != nil {
		return UnpackResult{}, err
	}
	defer st.Close()
	stop := context.AfterFunc(ctx, func() { st.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	// The sender is owned here: every return below waits for it.
	sent := make(chan sendResult, 1)
	go func() { sent <- sendData(st, r) }()

	res, rerr := readUnpackEnd(br)
	if rerr != nil {
		// The agent failed, or the connection did: the sender may be
		// blocked on a full window, which the deadline ends.
		st.SetWriteDeadline(time.Unix(1, 0))
	}
	s := <-sent
	switch {
	case s.readErr != nil:
		// The source's failure is the cause; the agent only saw it.
		return UnpackResult{}, s.readErr
	case ctx.Err() != nil:
		return UnpackResult{}, fmt.Errorf("agent %s: %w", opUnpackTree, ctx.Err())
	case rerr != nil:
		return UnpackResult{}, rerr
	case s.writeErr != nil:
		return UnpackResult{}, fmt.Errorf("agent %s: %w: %v", opUnpackTree, ErrDisconnected, s.writeErr)
	}
	return res, nil
}

// sendResult is how sendData ended: reading the source, or writing to the
// agent.
type sendResult struct {
	readErr, writeErr error
}

// sendData sends r as data frames, then a data-end frame carrying r's
// error, if any.
func sendData(w io.Writer, r io.Reader) sendResult {
	buf := make([]byte, dataChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if werr := writeFrame(w, frameData, buf[:n]); werr != nil {
				return sendResult{writeErr: werr}
			}
		}
		if err == io.EOF {
			b, _ := json.Marshal(dataEnd{})
			return sendResult{writeErr: writeFrame(w, frameDataEnd, b)}
		}
		if err != nil {
			b, _ := json.Marshal(dataEnd{Error: &wireError{Code: codeBadRequest, Message: "the host's source failed: " + err.Error()}})
			writeFrame(w, frameDataEnd, b)
			return sendResult{readErr: err}
		}
	}
}

// readUnpackEnd reads the agent's answer to unpack-tree: one data-end frame.
func readUnpackEnd(r io.Reader) (UnpackResult, error) {
	buf := make([]byte, 64<<10)
	for {
		t, payload, err := readFrame(r, buf)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				err = fmt.Errorf("%w: %v", ErrDisconnected, err)
			}
			return UnpackResult{}, fmt.Errorf("agent %s: %w", opUnpackTree, err)
		}
		if t != frameDataEnd {
			continue // a newer agent's frame
		}
		var end dataEnd
		if err := json.Unmarshal(payload, &end); err != nil {
			return UnpackResult{}, fmt.Errorf("agent %s: %w: bad end frame: %v", opUnpackTree, ErrProtocol, err)
		}
		if end.Error != nil {
			return UnpackResult{}, &RemoteError{Op: opUnpackTree, Code: end.Error.Code, Message: end.Error.Message}
		}
		if end.Unpacked == nil {
			return UnpackResult{}, fmt.Errorf("agent %s: %w: no result in the end frame", opUnpackTree, ErrProtocol)
		}
		return cleanUnpackResult(*end.Unpacked), nil
	}
}

// maxWarningBytes bounds one warning line a client keeps from an agent.
const maxWarningBytes = 512

// cleanUnpackResult makes an agent's answer fit for the operation's result,
// which reaches terminals and the dashboard: the VM's agent is as untrusted
// as the guest, so counts are clamped, warnings bounded in number and
// length, made valid UTF-8, and stripped of control and bidi characters.
func cleanUnpackResult(r UnpackResult) UnpackResult {
	r.Files, r.Bytes, r.SkippedDevices = max(r.Files, 0), max(r.Bytes, 0), max(r.SkippedDevices, 0)
	if len(r.Warnings) > maxUnpackWarnings {
		r.Warnings = r.Warnings[:maxUnpackWarnings]
	}
	out := make([]string, 0, len(r.Warnings))
	for _, w := range r.Warnings {
		if len(w) > maxWarningBytes {
			w = w[:maxWarningBytes]
		}
		w = strings.Map(func(c rune) rune {
			if unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c) || c == '\u2028' || c == '\u2029' {
				return '?'
			}
			return c
		}, strings.ToValidUTF8(w, "?"))
		out = append(out, w)
	}
	if len(out) == 0 {
		out = nil
	}
	r.Warnings = out
	return r
}
