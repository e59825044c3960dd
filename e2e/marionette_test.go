package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// A Marionette client: the protocol that geckodriver speaks to Firefox,
// spoken here directly, because there is no geckodriver on these machines
// and Firefox's WebDriver BiDi has no WebAuthn module.
//
// Over one TCP connection, every message is a frame "LENGTH:JSON". The
// server sends a hello frame first ({"applicationType": "gecko",
// "marionetteProtocol": 3}); then a command is [0, id, "Name", params] and
// its reply [1, id, error, result], one command at a time. Command names and
// parameters are those of Firefox's remote/marionette/driver.sys.mjs
// (WebDriver:*, WebAuthn:*, Addon:*, Marionette:*).

// marionette is one connection to Firefox. Its methods are safe for
// concurrent use; commands are sent one at a time.
type marionette struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	id     int
	broken error // set when a frame was cut short: the stream cannot be trusted any more
}

// marionetteError is the error member of a reply: a WebDriver error name
// ("no such element", "javascript error", ...) and Firefox's message.
type marionetteError struct {
	Command string `json:"-"`
	Name    string `json:"error"`
	Message string `json:"message"`
}

func (e *marionetteError) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Command, e.Name, e.Message)
}

// maxFrame bounds a frame (a screenshot is the largest we expect).
const maxFrame = 64 << 20

// dialMarionette connects to Firefox's Marionette server at addr and reads
// its hello.
func dialMarionette(addr string, timeout time.Duration) (*marionette, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	m := &marionette{conn: conn, r: bufio.NewReader(conn)}
	conn.SetDeadline(time.Now().Add(timeout))
	frame, err := m.readFrame()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("marionette hello: %w", err)
	}
	var hello struct {
		ApplicationType string `json:"applicationType"`
		Protocol        int    `json:"marionetteProtocol"`
	}
	if err := json.Unmarshal(frame, &hello); err != nil || hello.Protocol != 3 {
		conn.Close()
		return nil, fmt.Errorf("marionette hello %q: want protocol 3", frame)
	}
	conn.SetDeadline(time.Time{})
	return m, nil
}

func (m *marionette) Close() error { return m.conn.Close() }

// call sends the command name with params (nil: {}) and decodes its result
// into out (nil: discard). Commands that return a single value wrap it as
// {"value": ...}; call unwraps it. The reply must come within timeout; if
// it does not, the connection is unusable and every later call fails.
func (m *marionette) call(name string, params any, timeout time.Duration, out any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.broken != nil {
		return fmt.Errorf("%s: connection lost earlier: %w", name, m.broken)
	}
	if params == nil {
		params = struct{}{}
	}
	m.id++
	id := m.id
	msg, err := json.Marshal([]any{0, id, name, params})
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	m.conn.SetDeadline(time.Now().Add(timeout))
	defer m.conn.SetDeadline(time.Time{})
	if _, err := m.conn.Write(append([]byte(strconv.Itoa(len(msg))+":"), msg...)); err != nil {
		m.broken = err
		return fmt.Errorf("%s: %w", name, err)
	}
	frame, err := m.readFrame()
	if err != nil {
		m.broken = err
		return fmt.Errorf("%s: %w", name, err)
	}
	var reply []json.RawMessage
	var kind, rid int
	if json.Unmarshal(frame, &reply) != nil || len(reply) != 4 ||
		json.Unmarshal(reply[0], &kind) != nil || kind != 1 ||
		json.Unmarshal(reply[1], &rid) != nil || rid != id {
		m.broken = fmt.Errorf("not the reply to command %d: %.200q", id, frame)
		return fmt.Errorf("%s: %w", name, m.broken)
	}
	if string(reply[2]) != "null" {
		e := &marionetteError{Command: name}
		if err := json.Unmarshal(reply[2], e); err != nil {
			return fmt.Errorf("%s: error %s", name, reply[2])
		}
		return e
	}
	if out == nil {
		return nil
	}
	result := reply[3]
	var wrapped map[string]json.RawMessage
	if json.Unmarshal(result, &wrapped) == nil && len(wrapped) == 1 && wrapped["value"] != nil {
		result = wrapped["value"]
	}
	if err := json.Unmarshal(result, out); err != nil {
		return fmt.Errorf("%s: result %.200s: %w", name, result, err)
	}
	return nil
}

// readFrame reads one "LENGTH:JSON" frame.
func (m *marionette) readFrame() ([]byte, error) {
	head, err := m.r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(head[:len(head)-1])
	if err != nil || n < 0 || n > maxFrame {
		return nil, fmt.Errorf("bad frame length %.20q", head)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(m.r, frame); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return frame, nil
}
