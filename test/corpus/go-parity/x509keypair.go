// Loads every corpus case the way Vault and other Go servers do, for the parity test
// (test/corpus/go-parity.test.ts): for each folder under the argument, tls.LoadX509KeyPair on
// its fullchain.pem and privkey.pem. Prints one line a case: NAME<TAB>loads, or
// NAME<TAB>refuses<TAB>Go's error. Standard library only, so `go run` needs no module.
package main

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: x509keypair CASES_DIR")
		os.Exit(2)
	}
	entries, err := os.ReadDir(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	names := make([]string, 0, len(entries))
	for _, entry := range entries {
		if entry.IsDir() {
			names = append(names, entry.Name())
		}
	}
	sort.Strings(names)
	for _, name := range names {
		dir := filepath.Join(os.Args[1], name)
		_, err := tls.LoadX509KeyPair(filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem"))
		if err != nil {
			fmt.Printf("%s\trefuses\t%s\n", name, strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Printf("%s\tloads\n", name)
		}
	}
}
