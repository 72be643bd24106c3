// runc-wrapper: hand over to runc after removing the capabilities this host cannot grant.
//
// Some VMs run with a capability bounding set that lacks CAP_SYS_RESOURCE. Docker still
// asks for every capability for a privileged container, and runc then fails with
// "unable to apply caps: operation not permitted" (seen on `docker exec --privileged`,
// which kind uses for every command it runs in a node). Registered as dockerd's default
// runtime, this wrapper edits the OCI bundle's config.json on `create`/`run` and the
// `--process` file on `exec`, dropping every capability missing from its own bounding
// set, then execs the real runc with the unchanged arguments.
//
// Only install it where privileged containers fail (scripts/install-runc-wrapper.sh).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// realRunc is set at build time with -ldflags "-X main.realRunc=/usr/sbin/runc".
var realRunc = "/usr/sbin/runc"

// capNames follows linux/capability.h; index = capability number.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// flags of runc's global options that take a value (the subcommand comes after them).
var globalWithValue = map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}

func missingCaps() map[string]bool {
	missing := map[string]bool{}
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return map[string]bool{"CAP_SYS_RESOURCE": true}
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		line := scanner.Text()
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		bounding, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
		if err != nil {
			return map[string]bool{"CAP_SYS_RESOURCE": true}
		}
		for i, name := range capNames {
			if bounding&(1<<uint(i)) == 0 {
				missing[name] = true
			}
		}
	}
	return missing
}

func filterCaps(caps map[string]any, missing map[string]bool) bool {
	changed := false
	for _, set := range []string{"bounding", "effective", "inheritable", "permitted", "ambient"} {
		list, ok := caps[set].([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			if name, ok := c.(string); ok && missing[name] {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// edit removes missing capabilities from a process object found at path (a list of keys) in file.
func edit(file string, path []string, missing map[string]bool) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber() // keep 64-bit limits exact
	var doc map[string]any
	if err := decoder.Decode(&doc); err != nil {
		return err
	}
	node := doc
	for _, key := range path {
		next, ok := node[key].(map[string]any)
		if !ok {
			return nil
		}
		node = next
	}
	caps, ok := node["capabilities"].(map[string]any)
	if !ok || !filterCaps(caps, missing) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	info, err := os.Stat(file)
	if err != nil {
		return err
	}
	tmp := file + ".rbd-tmp"
	if err := os.WriteFile(tmp, out, info.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// optionValue returns the value of a --name / -n option in args (either "--name v" or "--name=v").
func optionValue(args []string, long, short string) (string, bool) {
	for i, a := range args {
		if a == long || (short != "" && a == short) {
			if i+1 < len(args) {
				return args[i+1], true
			}
			return "", false
		}
		if strings.HasPrefix(a, long+"=") {
			return strings.TrimPrefix(a, long+"="), true
		}
	}
	return "", false
}

func subcommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if globalWithValue[a] {
				i++
			}
			continue
		}
		return a, args[i+1:]
	}
	return "", nil
}

func main() {
	args := os.Args[1:]
	cmd, rest := subcommand(args)
	var err error
	switch cmd {
	case "create", "run":
		bundle, ok := optionValue(rest, "--bundle", "-b")
		if !ok {
			bundle = "."
		}
		err = edit(filepath.Join(bundle, "config.json"), []string{"process"}, missingCaps())
	case "exec":
		if process, ok := optionValue(rest, "--process", "-p"); ok {
			err = edit(process, nil, missingCaps())
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: %s: %v\n", cmd, err)
		os.Exit(1)
	}
	argv := append([]string{realRunc}, args...)
	if err := syscall.Exec(realRunc, argv, os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "runc-wrapper: exec %s: %v\n", realRunc, err)
		os.Exit(1)
	}
}
