package cli

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/itchyny/gojq"
	"sigs.k8s.io/yaml"
)

// emit prints v as JSON or YAML (a table command's structured form),
// filtered by --query when given. In table mode it prints JSON: verbs
// whose answer is a document (iam export) have no table.
func (e *env) emit(v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	if e.query == "" {
		return e.write(buf.Bytes())
	}
	q, err := compileQuery(e.query)
	if err != nil {
		return usageError{msg: err.Error()}
	}
	var doc any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		return err
	}
	iter := q.Run(doc)
	for {
		r, ok := iter.Next()
		if !ok {
			return nil
		}
		if err, ok := r.(error); ok {
			return fmt.Errorf("--query: %w", err)
		}
		buf.Reset()
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return err
		}
		if err := e.write(buf.Bytes()); err != nil {
			return err
		}
	}
}

// write prints one JSON document as JSON or YAML.
func (e *env) write(j []byte) error {
	if e.output == "yaml" {
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return err
		}
		if len(y) > 0 && y[len(y)-1] != '\n' {
			y = append(y, '\n')
		}
		_, err = e.stdout.Write(y)
		return err
	}
	_, err := e.stdout.Write(j)
	return err
}

func compileQuery(s string) (*gojq.Code, error) {
	p, err := gojq.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--query %q: %v", s, err)
	}
	c, err := gojq.Compile(p)
	if err != nil {
		return nil, fmt.Errorf("--query %q: %v", s, err)
	}
	return c, nil
}
