variable "domain_name" {
  description = "Host name the certificate is for (the ingress host)."
  type        = string
}

variable "subject_alternative_names" {
  description = "Further host names of the certificate (the agents' gRPC host), in the same zone."
  type        = list(string)
  default     = []
}

variable "route53_zone_id" {
  description = "Route 53 hosted zone that holds domain_name (DNS validation records go there)."
  type        = string
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
