// Command schemagen writes the JSON schemas that kubeconform validates deploy/k8s against, so
// that CI needs no network: kubeconform would otherwise download them.
//
// Sources, both taken from the Go module proxy (go mod download -json MODULE@VERSION prints Dir):
//   - Kubernetes core types: api/openapi-spec/swagger.json of k8s.io/kubernetes;
//   - KEDA's ScaledObject: config/crd/bases/keda.sh_scaledobjects.yaml of github.com/kedacore/keda/v2.
//
// Output, in kubeconform's "standalone-strict" flavour (every object that lists its properties
// rejects others, which is what `kubeconform -strict` relies on), one file per kind named as
// kubeconform's template {{ .ResourceKind }}{{ .KindSuffix }}.json expects, e.g.
// deployment-apps-v1.json. Each file carries the definitions it needs under "definitions".
//
// Usage (from this directory, which is a module of its own so that the main module needs no YAML
// library; the versions are those of the vendored files):
//
//	go mod download k8s.io/kubernetes@v1.34.4 github.com/kedacore/keda/v2@v2.18.0
//	go run . -kubernetes "$(go env GOMODCACHE)/k8s.io/kubernetes@v1.34.4" \
//	    -keda "$(go env GOMODCACHE)/github.com/kedacore/keda/v2@v2.18.0" -out ../../schemas
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

// kinds are the core types the manifests use: swagger definition name -> output file.
var kinds = map[string]string{
	"io.k8s.api.apps.v1.Deployment":            "deployment-apps-v1.json",
	"io.k8s.api.core.v1.Service":               "service-v1.json",
	"io.k8s.api.core.v1.ConfigMap":             "configmap-v1.json",
	"io.k8s.api.core.v1.ServiceAccount":        "serviceaccount-v1.json",
	"io.k8s.api.policy.v1.PodDisruptionBudget": "poddisruptionbudget-policy-v1.json",
}

func main() {
	k8sDir := flag.String("kubernetes", "", "directory of the k8s.io/kubernetes module")
	kedaDir := flag.String("keda", "", "directory of the github.com/kedacore/keda/v2 module")
	out := flag.String("out", "../../schemas", "output directory")
	flag.Parse()
	if *k8sDir == "" || *kedaDir == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*k8sDir, *kedaDir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "schemagen:", err)
		os.Exit(1)
	}
}

func run(k8sDir, kedaDir, out string) error {
	raw, err := os.ReadFile(filepath.Join(k8sDir, "api/openapi-spec/swagger.json"))
	if err != nil {
		return err
	}
	var swagger struct {
		Definitions map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &swagger); err != nil {
		return err
	}
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		defs := map[string]any{}
		if err := collect(swagger.Definitions, name, defs); err != nil {
			return err
		}
		for n, d := range defs {
			strict(d)
			if n == "io.k8s.apimachinery.pkg.api.resource.Quantity" {
				// "1", 1 and 0.5 are all quantities: YAML numbers are accepted too.
				q := d.(map[string]any)
				delete(q, "type")
				delete(q, "format")
				q["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}
			}
		}
		root := map[string]any{"$ref": "#/definitions/" + name, "definitions": defs}
		if err := write(filepath.Join(out, kinds[name]), root); err != nil {
			return err
		}
	}

	raw, err = os.ReadFile(filepath.Join(kedaDir, "config/crd/bases/keda.sh_scaledobjects.yaml"))
	if err != nil {
		return err
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Name   string `json:"name"`
				Schema struct {
					OpenAPIV3Schema map[string]any `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(raw, &crd); err != nil {
		return err
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != "v1alpha1" {
			continue
		}
		s := v.Schema.OpenAPIV3Schema
		strict(s)
		return write(filepath.Join(out, "scaledobject-keda-v1alpha1.json"), s)
	}
	return fmt.Errorf("keda.sh_scaledobjects.yaml: no version v1alpha1")
}

// collect adds name and every definition it refers to, transitively, to defs.
func collect(all map[string]any, name string, defs map[string]any) error {
	if _, ok := defs[name]; ok {
		return nil
	}
	d, ok := all[name]
	if !ok {
		return fmt.Errorf("swagger.json: no definition %s", name)
	}
	defs[name] = d
	var refs []string
	walk(d, func(m map[string]any) {
		if r, ok := m["$ref"].(string); ok {
			refs = append(refs, strings.TrimPrefix(r, "#/definitions/"))
		}
	})
	for _, r := range refs {
		if err := collect(all, r, defs); err != nil {
			return err
		}
	}
	return nil
}

func walk(v any, f func(map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(v)
		for _, c := range v {
			walk(c, f)
		}
	case []any:
		for _, c := range v {
			walk(c, f)
		}
	}
}

// strict turns OpenAPI into what kubeconform's strict schemas are: an object that lists its
// properties rejects others (unless it says it keeps unknown fields), and int-or-string values
// and quantities accept a number or a string, as Kubernetes does.
func strict(v any) {
	walk(v, func(m map[string]any) {
		if m["format"] == "int-or-string" || m["x-kubernetes-int-or-string"] == true {
			delete(m, "type")
			delete(m, "format")
			m["oneOf"] = []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}
		}
		if _, ok := m["properties"]; ok {
			_, has := m["additionalProperties"]
			if !has && m["x-kubernetes-preserve-unknown-fields"] != true {
				m["additionalProperties"] = false
			}
		}
	})
}

func write(path string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	fmt.Println("wrote", path)
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
