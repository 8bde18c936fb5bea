package filebackup

// ProviderName is the name of the files provider in manifests.
const ProviderName = "files"

// Payload is the files provider's record in a backup manifest.
type Payload struct {
	Parts []Part `json:"parts"`
	Files int    `json:"files"`
}
