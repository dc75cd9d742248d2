package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the environment variable of every key: server.listen is
// GATEWAY_SERVER_LISTEN.
const EnvPrefix = "GATEWAY_"

// Override sets one key, as --server.listen=127.0.0.1:7070 does.
type Override struct {
	Key   string
	Value string
}

// Load builds the configuration from, in increasing precedence: the
// defaults, the YAML file at path (if any), environment variables (environ
// in os.Environ form) and overrides; then it reads the files of
// kafka.property_files into kafka.properties. It does not validate.
func Load(path string, environ []string, overrides []Override) (Config, error) {
	cfg := Default()
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return cfg, fmt.Errorf("read config: %w", err)
		}
		if err := decodeStrict(data, &cfg); err != nil {
			return cfg, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	for _, k := range Keys() {
		if k.Map || k.FileOnly {
			continue
		}
		name := EnvName(k.Path)
		for _, kv := range environ {
			if v, ok := strings.CutPrefix(kv, name+"="); ok {
				if err := Set(&cfg, k.Path, v); err != nil {
					return cfg, fmt.Errorf("environment %s: %w", name, err)
				}
			}
		}
	}
	for _, o := range overrides {
		if err := Set(&cfg, o.Key, o.Value); err != nil {
			return cfg, fmt.Errorf("flag --%s: %w", o.Key, err)
		}
	}
	if err := cfg.Kafka.ReadPropertyFiles("kafka"); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// decodeStrict decodes YAML into cfg, rejecting unknown keys.
func decodeStrict(data []byte, cfg *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// EnvName is the environment variable of a key.
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// Key describes one configuration key.
type Key struct {
	// Path is the dotted YAML path, for example "server.listen".
	Path string
	// Type is a short type name: string, bool, int, duration, list, map.
	Type string
	// Default is the default value as text.
	Default string
	// Map is true for string maps, whose entries are set as Path.NAME.
	Map bool
	// FileOnly is true for lists of objects, set in the YAML file only.
	FileOnly bool
}

// Keys lists every key of Config with its default, in declaration order.
func Keys() []Key {
	var keys []Key
	walk(reflect.ValueOf(Default()), "", func(path string, v reflect.Value) {
		k := Key{Path: path, Type: typeName(v.Type()), Default: format(v)}
		k.Map = v.Kind() == reflect.Map
		k.FileOnly = v.Kind() == reflect.Slice && v.Type().Elem().Kind() != reflect.String
		keys = append(keys, k)
	})
	return keys
}

// walk calls leaf for every settable leaf under v (a struct), following yaml
// tags and inlined structs.
func walk(v reflect.Value, prefix string, leaf func(path string, v reflect.Value)) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		name, inline := yamlName(f)
		if name == "-" {
			continue
		}
		fv := v.Field(i)
		if inline {
			walk(fv, prefix, leaf)
			continue
		}
		path := name
		if prefix != "" {
			path = prefix + "." + name
		}
		if fv.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			walk(fv, path, leaf)
			continue
		}
		leaf(path, fv)
	}
}

func yamlName(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("yaml")
	name, opts, _ := strings.Cut(tag, ",")
	if opts == "inline" {
		return "", true
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name, false
}

// Set assigns the text value to the key at path. For string maps, the part
// of the path after the map's own path is the entry name
// (kafka.properties.sasl.mechanism sets "sasl.mechanism").
func Set(cfg *Config, path, value string) error {
	var target reflect.Value
	var mapKey string
	walk(reflect.ValueOf(cfg).Elem(), "", func(p string, v reflect.Value) {
		switch {
		case p == path:
			target = v
		case v.Kind() == reflect.Map && strings.HasPrefix(path, p+"."):
			target, mapKey = v, strings.TrimPrefix(path, p+".")
		}
	})
	if !target.IsValid() {
		return fmt.Errorf("unknown key %q", path)
	}
	if target.Kind() == reflect.Map {
		if mapKey == "" {
			return fmt.Errorf("%s: name an entry, as in %s.NAME=VALUE", path, path)
		}
		if target.IsNil() {
			target.Set(reflect.MakeMap(target.Type()))
		}
		target.SetMapIndex(reflect.ValueOf(mapKey), reflect.ValueOf(value))
		return nil
	}
	if err := parseInto(target, value); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func parseInto(v reflect.Value, s string) error {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration such as 5s or 250ms", s)
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, v.Type().Bits())
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("is a list of objects: set it in the config file")
		}
		var items []string
		if s != "" {
			items = strings.Split(s, ",")
			for i := range items {
				items[i] = strings.TrimSpace(items[i])
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("cannot be set from text")
	}
	return nil
}

func typeName(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "duration"
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Slice:
		if t.Elem().Kind() != reflect.String {
			return "objects"
		}
		return "list"
	case reflect.Map:
		return "map"
	}
	return t.Kind().String()
}

func format(v reflect.Value) string {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		return time.Duration(v.Int()).String()
	}
	switch v.Kind() {
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Sprintf("[%d entries]", v.Len())
		}
		items := make([]string, v.Len())
		for i := range items {
			items[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(items, ",")
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, fmt.Sprintf("%v=%v", k, v.MapIndex(k)))
		}
		slices.Sort(keys)
		return strings.Join(keys, ",")
	}
	return fmt.Sprint(v.Interface())
}
