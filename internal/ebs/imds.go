package ebs

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// imdsTimeout bounds a question to the instance metadata service.
const imdsTimeout = 10 * time.Second

// InstanceIdentity asks the instance metadata service (IMDSv2, endpoint
// overridable by AWS_EC2_METADATA_SERVICE_ENDPOINT) for this instance's id
// and availability zone.
func InstanceIdentity(ctx context.Context) (instanceID, az string, err error) {
	ctx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	doc, err := imds.New(imds.Options{}).GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return "", "", fmt.Errorf("instance identity from the instance metadata service: %w", err)
	}
	return doc.InstanceID, doc.AvailabilityZone, nil
}
