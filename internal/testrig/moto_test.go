package testrig

import (
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

func TestMoto(t *testing.T) {
	env := Moto(t)
	if again := Moto(t); again != env {
		t.Errorf("second call returned %+v, first %+v", again, env)
	}
	env.Setenv(t)
	// The SDK's default chain must find everything it needs in Setenv's
	// variables.
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	client := ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(env.Endpoint) })
	out, err := client.DescribeAvailabilityZones(t.Context(), &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		t.Fatalf("DescribeAvailabilityZones at %s: %v", env.Endpoint, err)
	}
	if len(out.AvailabilityZones) == 0 || aws.ToString(out.AvailabilityZones[0].RegionName) != env.Region {
		t.Errorf("availability zones %+v are not in %s", out.AvailabilityZones, env.Region)
	}
}

func TestMotoEnvEnviron(t *testing.T) {
	e := MotoEnv{Endpoint: "http://x", Region: "eu-west-3"}
	want := []string{"AWS_ACCESS_KEY_ID=testing", "AWS_SECRET_ACCESS_KEY=testing", "AWS_SESSION_TOKEN=testing", "AWS_REGION=eu-west-3"}
	if got := e.Environ(); !slices.Equal(got, want) {
		t.Errorf("Environ() = %q, want %q", got, want)
	}
}
