// Command kstatus prints the kstatus verdict (Current, InProgress, Failed, ...) of Kubernetes
// objects, computed by sigs.k8s.io/cli-utils -- the library Flux's kustomize-controller and
// helm-controller use for healthChecks and `wait: true`. pinsync's tests feed it live objects
// (`kubectl get -o json`) so that what Flux would decide is checked, not assumed.
//
// Input on stdin: one object, or a List (`kubectl get ... -o json` of several). Output: one JSON
// line per object, {"kind", "namespace", "name", "status", "message"}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// A List is split by hand: Unstructured.UnmarshalJSON decodes single objects only.
	var top struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(raw, &top); err != nil {
		return err
	}
	objects := top.Items
	if objects == nil {
		objects = []json.RawMessage{raw}
	}
	encoder := json.NewEncoder(out)
	for _, item := range objects {
		var obj unstructured.Unstructured
		if err := obj.UnmarshalJSON(item); err != nil {
			return err
		}
		result, err := status.Compute(&obj)
		if err != nil {
			return fmt.Errorf("%s %s/%s: %w", obj.GetKind(), obj.GetNamespace(), obj.GetName(), err)
		}
		v := verdict{obj.GetKind(), obj.GetNamespace(), obj.GetName(), result.Status.String(), result.Message}
		if err := encoder.Encode(v); err != nil {
			return err
		}
	}
	return nil
}
