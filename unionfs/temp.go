package unionfs

import "github.com/layerfs/layerfs/copyup"

func tempName() string { return copyup.TempName() }
