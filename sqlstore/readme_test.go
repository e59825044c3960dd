package sqlstore_test

import (
	"os"
	"strings"
	"testing"

	"github.com/passkey-stepup/stepup/sqlstore"
)

// TestReadmeSchema keeps the schema printed in README.md equal to Schema's.
func TestReadmeSchema(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []sqlstore.Dialect{sqlstore.SQLite, sqlstore.PostgreSQL} {
		if block := "```sql\n" + sqlstore.Schema(d) + "```\n"; !strings.Contains(string(readme), block) {
			t.Errorf("README.md does not show Schema(%s) as it is:\n%s", d, block)
		}
	}
}
