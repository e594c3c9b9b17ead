package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// One configuration scheme for every command (issue #13, item 7). A
// command's flags are its settings; each can also come from a YAML file and
// from the environment, named after the flag:
//
//	flag --upstream-host   YAML key upstreamHost   variable MCPGUARD_UPSTREAM_HOST
//
// (the webhook and inject use the prefix MCPGUARD_WEBHOOK_, which the
// manifests set). Precedence, lowest first: the flag's default, the file,
// the environment, the command line. A list flag takes a YAML sequence, or
// in the environment a comma-separated list, except the lists of patterns
// (--redact), which are never split at commas: one per line.

// settingsSkip are flags that are not settings: the file itself and help.
var settingsSkip = map[string]bool{"config": true, "help": true}

// notASetting marks a flag that is an action, not a setting (connect's
// --login, --logout): only the command line may ask for it, never a
// variable left in the environment or a file.
const notASetting = "mcpguard.dev/not-a-setting"

func isSetting(f *pflag.Flag) bool {
	return !settingsSkip[f.Name] && !f.Hidden && f.Annotations[notASetting] == nil
}

// Annotations a command may carry for applySettings.
const (
	settingsPrefix   = "mcpguard.dev/settings-prefix"   // the variables' prefix, MCPGUARD_ when absent
	settingsDiscover = "mcpguard.dev/settings-discover" // "true": without --config, look for ./mcpguard.yaml
)

// applySettings is every command's first step (the root command's
// PersistentPreRunE): it layers the command's --config file, when it has
// that flag, and its variables under the flags given.
func applySettings(cmd *cobra.Command, _ []string) error {
	prefix := cmp.Or(cmd.Annotations[settingsPrefix], "MCPGUARD_")
	var file string
	if f := cmd.Flags().Lookup("config"); f != nil {
		file = f.Value.String()
		if !f.Changed {
			file = os.Getenv(envName(prefix, "config"))
		}
		if file == "" && cmd.Annotations[settingsDiscover] == "true" {
			file = discoverProxyConfig() // on a laptop: ./mcpguard.yaml or the user's config directory
		}
	}
	if err := layerSettings(cmd.Flags(), cmd.CommandPath(), prefix, file); err != nil {
		return &exitError{code: exitUsage, err: err}
	}
	return nil
}

// addConfigFlag gives cmd a --config FILE of settings.
func addConfigFlag(cmd *cobra.Command) {
	prefix := cmp.Or(cmd.Annotations[settingsPrefix], "MCPGUARD_")
	cmd.Flags().String("config", "", "YAML file of settings: each flag as a key, --foo-bar as fooBar (env "+envName(prefix, "config")+"); the environment ("+prefix+"FOO_BAR) wins over it and flags over both")
}

// layerSettings sets every flag the user did not pass on the command line
// from file (none when "") and then from the environment under prefix.
// Errors name the file:line and key, or the variable, and what the setting
// takes.
func layerSettings(fs *pflag.FlagSet, command, prefix, file string) error {
	var user []*pflag.Flag
	fs.Visit(func(f *pflag.Flag) { user = append(user, f) })
	saved := make([][]string, len(user))
	for i, f := range user {
		saved[i] = flagValues(f)
	}
	var errs []error
	if file != "" {
		errs = append(errs, settingsFromFile(fs, command, file))
	}
	errs = append(errs, settingsFromEnv(fs, prefix, os.LookupEnv, func(f *pflag.Flag) bool { return slices.Contains(user, f) }))
	for i, f := range user {
		setValues(f, saved[i])
		f.Changed = true
	}
	return errors.Join(errs...)
}

// settingsFromFile reads a YAML mapping of settings.
func settingsFromFile(fs *pflag.FlagSet, command, file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %s", file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(doc.Content) == 0 {
		return nil // an empty file sets nothing
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: the configuration is a mapping of settings (key: value), not a %s", file, m.Line, yamlKind(m))
	}
	var errs []error
	seen := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		at := fmt.Sprintf("%s:%d", file, k.Line)
		f := fs.Lookup(kebab(k.Value))
		if f == nil || !isSetting(f) || camel(f.Name) != k.Value {
			errs = append(errs, fmt.Errorf("%s: %q is not a key of %s's configuration; known keys: %s", at, k.Value, command, strings.Join(settingKeys(fs), ", ")))
			continue
		}
		if line, dup := seen[k.Value]; dup {
			errs = append(errs, fmt.Errorf("%s: %q is set twice (first on line %d)", at, k.Value, line))
			continue
		}
		seen[k.Value] = k.Line
		var vals []string
		switch {
		case v.Kind == yaml.ScalarNode && v.Tag != "!!null":
			vals = []string{v.Value}
		case v.Kind == yaml.SequenceNode && isList(f):
			for _, e := range v.Content {
				if e.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Errorf("%s:%d: %q takes a list of %s, not a %s", file, e.Line, k.Value, listOf(f), yamlKind(e)))
					continue
				}
				vals = append(vals, e.Value)
			}
		default:
			errs = append(errs, fmt.Errorf("%s:%d: %q takes %s, not a %s", file, v.Line, k.Value, takes(f), yamlKind(v)))
			continue
		}
		if err := setFlag(f, vals); err != nil {
			errs = append(errs, fmt.Errorf("%s:%d: %s: %q is not %s", file, v.Line, k.Value, strings.Join(vals, ","), takes(f)))
		}
	}
	return errors.Join(errs...)
}

// settingsFromEnv sets every flag but those skip names from the variable
// prefix + FLAG that lookup returns.
func settingsFromEnv(fs *pflag.FlagSet, prefix string, lookup func(string) (string, bool), skip func(*pflag.Flag) bool) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if skip(f) || !isSetting(f) {
			return
		}
		env := envName(prefix, f.Name)
		v, ok := lookup(env)
		if !ok {
			return
		}
		vals := []string{v}
		if isList(f) {
			sep := ","
			if f.Value.Type() == "stringArray" {
				sep = "\n" // patterns hold commas: --redact '\d{3,4}'
			}
			vals = strings.Split(v, sep)
		}
		if err := setFlag(f, vals); err != nil {
			errs = append(errs, fmt.Errorf("%s=%q is not %s (--%s)", env, v, takes(f), f.Name))
		}
	})
	return errors.Join(errs...)
}

func envName(prefix, flag string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func setFlag(f *pflag.Flag, vals []string) error {
	var err error
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		err = sv.Replace(vals)
	} else {
		err = f.Value.Set(vals[0])
	}
	if err == nil {
		f.Changed = true
	}
	return err
}

func flagValues(f *pflag.Flag) []string {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		return slices.Clone(sv.GetSlice())
	}
	return []string{f.Value.String()}
}

func setValues(f *pflag.Flag, vals []string) {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		_ = sv.Replace(vals)
		return
	}
	_ = f.Value.Set(vals[0])
}

func isList(f *pflag.Flag) bool { _, ok := f.Value.(pflag.SliceValue); return ok }

// takes says what a setting takes, in the file's words, never a Go type.
func takes(f *pflag.Flag) string {
	if isList(f) {
		return "a list of " + listOf(f)
	}
	return map[string]string{
		"duration": "a duration such as 30s", "int": "a whole number", "bool": "true or false",
		"string": "a string", "float64": "a number",
	}[f.Value.Type()]
}

func listOf(f *pflag.Flag) string {
	if strings.HasPrefix(f.Value.Type(), "duration") {
		return "durations"
	}
	return "strings"
}

func yamlKind(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "mapping"
	case n.Kind == yaml.SequenceNode:
		return "list"
	case n.Tag == "!!null":
		return "null"
	}
	return "single value"
}

// settingKeys lists the YAML keys of fs's settings.
func settingKeys(fs *pflag.FlagSet) []string {
	var keys []string
	fs.VisitAll(func(f *pflag.Flag) {
		if isSetting(f) {
			keys = append(keys, camel(f.Name))
		}
	})
	slices.Sort(keys)
	return keys
}

// camel is a flag's YAML key: upstream-host → upstreamHost.
func camel(flag string) string {
	parts := strings.Split(flag, "-")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// kebab is a YAML key's flag: upstreamHost → upstream-host.
func kebab(s string) string {
	var b strings.Builder
	for i, r := range s {
		if r >= 'A' && r <= 'Z' {
			if i > 0 {
				b.WriteByte('-')
			}
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
