module example.com/shop/gateway

go 1.20

require (
	github.com/gin-gonic/gin v1.6.3
	github.com/dgrijalva/jwt-go v3.2.0+incompatible
	github.com/gorilla/websocket v1.4.0
	golang.org/x/text v0.3.5
	gopkg.in/yaml.v2 v2.2.7
)

require (
	github.com/gin-contrib/sse v0.1.0 // indirect
	github.com/go-playground/validator/v10 v10.2.0 // indirect
	github.com/golang/protobuf v1.3.3 // indirect
	github.com/json-iterator/go v1.1.9 // indirect
	golang.org/x/net v0.7.0 // indirect
	golang.org/x/sys v0.5.0 // indirect
)
