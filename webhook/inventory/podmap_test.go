package inventory

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	"github.com/portreeve/portreeve/policies"
	"github.com/portreeve/portreeve/policies/exposure"
)

// TestPodObjectMapIsUnstructured: for every kind with a pod spec, the map
// built by hand gives the extraction what reflection's ToUnstructured of the
// same trimmed object gives it: the same exposure and the same claims.
func TestPodObjectMapIsUnstructured(t *testing.T) {
	spec := podSpec("n1", map[string]string{"role": "edge"}, hp(8080), hpIP(53, "10.0.0.1"), corev1.ContainerPort{ContainerPort: 9090, Name: "metrics"})
	spec.ServiceAccountName = "edge"
	spec.InitContainers = []corev1.Container{{Name: "init", Ports: []corev1.ContainerPort{{ContainerPort: 70, HostPort: 7070, Protocol: corev1.ProtocolUDP}}}}
	spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Ports: []corev1.ContainerPort{{ContainerPort: 81, HostPort: 8181}}}}}
	hostNetwork := podSpec("", nil, corev1.ContainerPort{ContainerPort: 53, Protocol: corev1.ProtocolUDP})
	hostNetwork.HostNetwork = true
	hostNetwork.DeprecatedServiceAccount = "legacy"
	yes := true
	suspended := &batchv1.CronJob{ObjectMeta: meta("team-a", "nightly"), Spec: batchv1.CronJobSpec{Suspend: &yes, JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}}}
	two := int32(2)
	tests := []struct {
		name string
		obj  runtime.Object
	}{
		{"running pod", pod(meta("team-a", "web-1", "ReplicaSet", "web-5d4f"), spec)},
		{"finished pod", withPhase(pod(meta("team-a", "done"), spec), corev1.PodSucceeded)},
		{"hostNetwork pod", pod(meta("kube-system", "dns"), hostNetwork)},
		{"pod template", &corev1.PodTemplate{ObjectMeta: meta("team-a", "t"), Template: corev1.PodTemplateSpec{Spec: spec}}},
		{"replication controller", &corev1.ReplicationController{ObjectMeta: meta("team-a", "rc"), Spec: corev1.ReplicationControllerSpec{Replicas: &two, Template: &corev1.PodTemplateSpec{Spec: spec}}}},
		{"deployment", deployment(meta("team-a", "web"), 3, spec)},
		{"deployment scaled to zero", deployment(meta("team-a", "idle"), 0, spec)},
		{"deployment without replicas", &appsv1.Deployment{ObjectMeta: meta("team-a", "d"), Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}},
		{"statefulset", &appsv1.StatefulSet{ObjectMeta: meta("team-a", "db"), Spec: appsv1.StatefulSetSpec{Replicas: &two, Template: corev1.PodTemplateSpec{Spec: spec}}}},
		{"replicaset", replicaSet(meta("team-a", "web-5d4f", "Deployment", "web"), 1, spec)},
		{"daemonset", daemonSet(meta("kube-system", "dns"), hostNetwork)},
		{"running job", job(meta("team-a", "j", "CronJob", "c"), false, spec)},
		{"finished job", job(meta("team-a", "j2"), true, spec)},
		{"cronjob", &batchv1.CronJob{ObjectMeta: meta("team-a", "c"), Spec: batchv1.CronJobSpec{JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: spec}}}}}},
		{"suspended cronjob", suspended},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			obj := tc.obj.DeepCopyObject()
			gvks, _, err := clientgoscheme.Scheme.ObjectKinds(obj)
			if err != nil {
				t.Fatal(err)
			}
			k := exposure.Lookup(policies.GroupVersionKind{Group: gvks[0].Group, Version: gvks[0].Version, Kind: gvks[0].Kind})
			spec := podSpecOf(obj)
			*spec = trimPodSpec(spec)
			byHand, ok := podObjectMap(obj, spec)
			if !ok {
				t.Fatalf("%T has no map built by hand", obj)
			}
			viaReflection, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
			if err != nil {
				t.Fatal(err)
			}
			got, err := exposure.Extract(k, byHand, exposure.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			want, err := exposure.Extract(k, viaReflection, exposure.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Active != want.Active || !reflect.DeepEqual(got.Meta, want.Meta) {
				t.Errorf("active %v meta %+v, want %v %+v", got.Active, got.Meta, want.Active, want.Meta)
			}
			// The spec maps differ (reflection writes empty fields); what is read of them may not.
			gotPod, wantPod := *got.Pod, *want.Pod
			gotPod.Spec, wantPod.Spec = nil, nil
			if !reflect.DeepEqual(gotPod, wantPod) {
				t.Errorf("pod exposure:\n got  %+v\n want %+v", gotPod, wantPod)
			}
			if gc, wc := exposureClaims(got, false), exposureClaims(want, false); !reflect.DeepEqual(gc, wc) {
				t.Errorf("claims:\n got  %+v\n want %+v", gc, wc)
			}
		})
	}
}
