package stepup

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
)

// TestHashSetAgainstAMap runs random adds, removes and lookups with long
// probe chains against a Go map.
func TestHashSetAgainstAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 8; round++ {
		s := newHashSet()
		ref := map[uint64]bool{}
		space := uint64(50 + r.IntN(5000))
		for op := 0; op < 40000; op++ {
			// few distinct high bits to force long probe chains and wraparound
			k := (r.Uint64N(space) << 16) | uint64(r.IntN(3))
			if r.IntN(10) == 0 {
				k = r.Uint64()
			}
			switch r.IntN(3) {
			case 0:
				if s.add(k) == ref[nonZero(k)] {
					t.Fatalf("add %x", k)
				}
				ref[nonZero(k)] = true
			case 1:
				if s.remove(k) != ref[nonZero(k)] {
					t.Fatalf("remove %x", k)
				}
				delete(ref, nonZero(k))
				if r.IntN(100) == 0 {
					s.shrink()
				}
			case 2:
				if s.has(k) != ref[nonZero(k)] {
					t.Fatalf("round %d op %d: has %x = %v", round, op, k, s.has(k))
				}
			}
			if s.n != len(ref) {
				t.Fatalf("n %d, want %d", s.n, len(ref))
			}
		}
	}
}

// A model check of MemoryRegistry on a clock that only moves forward:
// Consume never accepts a key again within its TTL, values never outlive
// theirs, and all entries and owner shares go when every TTL has ended.
func TestMemoryRegistryAgainstAModel(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	now := time.Unix(1_800_000_000, 0)
	m := NewMemoryRegistry(1<<20, func() time.Time { return now })
	until := map[string]time.Time{}
	for op := 0; op < 300000; op++ {
		now = now.Add(time.Duration(r.IntN(300)) * time.Millisecond)
		key := fmt.Sprintf("stepup:{u%d}:k%d", r.IntN(50), r.IntN(400))
		ttl := time.Duration(1+r.IntN(20000)) * time.Millisecond
		switch r.IntN(6) {
		case 0, 1:
			first, err := m.Consume(ctx, "c"+key, ttl)
			if err != nil {
				t.Fatal(err)
			}
			if u, ok := until["c"+key]; ok && now.Before(u) && first {
				t.Fatalf("op %d: consumed twice within TTL", op)
			}
			if first {
				until["c"+key] = now.Add(ttl)
			}
		case 2:
			m.Take(ctx, "t"+key, 3, ttl)
		case 3:
			m.Give(ctx, "t"+key)
		case 4:
			m.Mark(ctx, "m"+key, int64(r.IntN(5)+1), ttl)
		case 5:
			m.Reset(ctx, "t"+key)
		}
	}
	now = now.Add(30 * time.Second)
	m.Consume(ctx, "stepup:{z}:last", time.Second)
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := m.used.n + len(m.vals); n != 1 {
		t.Errorf("%d entries left", n)
	}
	total := 0
	for _, s := range m.share {
		if s < 0 {
			t.Fatalf("negative share %d", s)
		}
		total += int(s)
	}
	if total != 1 || m.owners != 1 {
		t.Errorf("share total %d owners %d, want 1 1", total, m.owners)
	}
}

// TestDescribeNeverLogsAChallenge: go-webauthn's DevInfo goes to the log
// for every error but a challenge error, whose DevInfo holds the expected
// challenge.
func TestDescribeNeverLogsAChallenge(t *testing.T) {
	challenge := &protocol.Error{Type: "verification_error", Details: "Error validating challenge", DevInfo: "Expected b Value: \"c2VjcmV0\""}
	if got := describe(challenge); strings.Contains(got, "c2VjcmV0") || !strings.Contains(got, "Error validating challenge") {
		t.Errorf("challenge error logged as %q", got)
	}
	origin := &protocol.Error{Type: "verification_error", Details: "Error validating origin", DevInfo: "Expected Values: [https://a], Received: https://b"}
	if got := describe(origin); !strings.Contains(got, "Received: https://b") {
		t.Errorf("origin error logged as %q, want its DevInfo", got)
	}
}
