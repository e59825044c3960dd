// Package sqlstore is a reference [stepup.UserStore] over database/sql.
package sqlstore
