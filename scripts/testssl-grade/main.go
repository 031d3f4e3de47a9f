// Command testssl-grade rates a TLS server from testssl.sh's flat JSON
// findings (--jsonfile), by SSL Labs' SSL Server Rating Guide as testssl.sh
// 3.1+ implements it. Debian 12's testssl.sh (3.0.8) reports every finding
// but has no rating of its own; when the findings hold testssl.sh's own
// grade (id "overall_grade"), that grade is printed instead.
//
//	testssl-grade findings.json
//
// It prints how the score was reached, each cap and warning, the findings
// of HIGH or CRITICAL severity that the guide does not rate, and the
// grade on its last line ("grade: A+"). The exit status is 0 whenever a
// grade was given.
package main

import (
	"encoding/json"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: testssl-grade FINDINGS.json")
		os.Exit(2)
	}
	b, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "testssl-grade:", err)
		os.Exit(1)
	}
	var fs []finding
	if err := json.Unmarshal(b, &fs); err != nil {
		fmt.Fprintf(os.Stderr, "testssl-grade: %s: not testssl.sh flat JSON: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	r := rate(fs)
	for _, l := range r.notes {
		fmt.Println(l)
	}
	fmt.Println("grade:", r.grade)
}
