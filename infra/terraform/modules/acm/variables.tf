variable "domain_name" {
  description = "Host name the certificate is for (the ingress host)."
  type        = string
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
